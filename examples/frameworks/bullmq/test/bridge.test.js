// Python and Node on the same BullMQ queues, both ways, with the PyPI `bullmq` port
// (examples/frameworks/bullmq/bridge.py). The pytest wrapper sets PYTHON.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createWorker, demoHandlers } = require('../worker');
const { createQueue, enqueue } = require('../producer');
const { queueName, waitFor, obliterate, python } = require('./helpers');

const skip = process.env.PYTHON ? false : 'set PYTHON to an interpreter with the handbook installed';

test('a job added from Python is processed by a Node worker; a non-envelope one fails with the reason', { skip }, async () => {
  const name = queueName('py2node');
  const queue = createQueue(name);
  const worker = createWorker(name, demoHandlers);
  try {
    const goodId = (await python(['add', name, 'send_welcome', '{"user": 7}', 'welcome-7'])).trim();
    const badId = (await python(['add-raw', name, 'send_welcome', '{"user": 8}'])).trim();
    assert.equal(goodId, 'welcome-7');
    const good = await waitFor('the Python job to complete', async () => {
      const job = await queue.getJob(goodId);
      return (await job.getState()) === 'completed' && job;
    });
    assert.deepEqual(good.returnvalue, { handledBy: 'node', user: 7 });
    const bad = await waitFor('the raw job to fail', async () => {
      const job = await queue.getJob(badId);
      return (await job.getState()) === 'failed' && job;
    });
    assert.equal(bad.failedReason, 'malformed job: unsupported envelope version undefined (this code reads 1)');
    assert.equal(bad.attemptsMade, 1); // UnrecoverableError: the other four attempts are skipped
  } finally {
    await worker.close();
    await obliterate(queue);
  }
});

test('a job added from Node is processed by a Python worker; a non-envelope one fails with the reason', { skip }, async () => {
  const name = queueName('node2py');
  const queue = createQueue(name);
  try {
    const good = await enqueue(queue, 'send_welcome', { user: 9 }, { id: 'welcome-9' });
    const bad = await queue.add('send_welcome', { user: 10 }); // no envelope
    const lines = (await python(['work', name, '2', '20'])).trim().split('\n');
    const byId = Object.fromEntries(lines.map((line) => JSON.parse(line)).map((r) => [r.id, r]));
    assert.deepEqual(byId[good.id], { id: 'welcome-9', state: 'completed', result: { handledBy: 'python', user: 9 } });
    assert.equal(byId[bad.id].state, 'failed');
    // The job itself, as Node sees it, keeps the Python side's reason.
    const failed = await queue.getJob(bad.id);
    assert.equal(await failed.getState(), 'failed');
    assert.equal(failed.failedReason, 'malformed job: unsupported envelope version None (this code reads 1)');
    assert.deepEqual((await queue.getJob(good.id)).returnvalue, { handledBy: 'python', user: 9 });
  } finally {
    await obliterate(queue);
  }
});
