// The worker's dispatch: a job names its task, and only the handlers' own properties run.
// No Redis needed: the processor is called directly, as BullMQ would call it.
// Security review, finding 11: a job named `constructor` ran Object(args) and completed.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { UnrecoverableError } = require('bullmq');
const { processorFor, demoHandlers } = require('../worker');
const { newEnvelope, parseEnvelope } = require('../envelope');

const job = (task, args = { user: 1 }) => ({ id: '1', name: task, data: newEnvelope(task, args) });
const PROTOTYPE_NAMES = Object.getOwnPropertyNames(Object.prototype); // constructor, toString, __proto__...

test('a job naming a property of Object.prototype is refused as malformed, never run', async () => {
  assert.ok(PROTOTYPE_NAMES.includes('constructor') && PROTOTYPE_NAMES.includes('__proto__'));
  const processor = processorFor(demoHandlers);
  for (const task of PROTOTYPE_NAMES) {
    await assert.rejects(processor(job(task)), (err) => {
      assert.ok(err instanceof UnrecoverableError, `${task}: ${err}`); // failed at once, no retries
      assert.equal(err.message, `malformed job: no handler for task '${task}'`);
      return true;
    });
  }
  // before: handlers[task] found Object.prototype.constructor, which returned its argument
  assert.deepEqual(demoHandlers.constructor(job('constructor').data.args), { user: 1 });
});

test('own handlers still run, and an envelope field named after Object.prototype is unknown', async () => {
  const processor = processorFor(demoHandlers);
  assert.deepEqual(await processor(job('send_welcome', { user: 7 })), { handledBy: 'node', user: 7 });
  await assert.rejects(processor(job('no_such_task')), /no handler for task 'no_such_task'/);
  const data = { ...newEnvelope('send_welcome', { user: 7 }), toString: 'x' };
  assert.throws(() => parseEnvelope(data), /malformed job: unknown fields \["toString"\]/);
});
