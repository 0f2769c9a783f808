// A rate-limited queue starts no more than `max` jobs in any window of `duration` ms.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createWorker } = require('../worker');
const { createQueue, enqueue } = require('../producer');
const { partnerApiLimiter } = require('../config');
const { queueName, waitFor, obliterate } = require('./helpers');

const limiter = partnerApiLimiter;

test('the limiter keeps a queue to max jobs per duration, even with spare concurrency', async () => {
  const name = queueName('ratelimit');
  const queue = createQueue(name);
  const started = [];
  const worker = createWorker(name, { async call_partner_api(args, job) { started.push(job.processedOn); } }, { concurrency: 10, limiter });
  try {
    const jobs = 3 * limiter.max;
    for (let i = 0; i < jobs; i++) await enqueue(queue, 'call_partner_api', { i });
    await waitFor(`${jobs} jobs started`, () => started.length === jobs, { timeoutMs: 15_000 });
    started.sort((a, b) => a - b);
    for (let i = 0; i + limiter.max < started.length; i++) {
      const gap = started[i + limiter.max] - started[i];
      // job i and job i+max never fall in one window. The limiter's window is timed inside Redis
      // (a key with PEXPIRE); processedOn is the worker's Date.now(), passed to the moveToActive
      // script (bullmq 6.7 redis-queue-backend.js), so the two clocks differ by the worker's
      // latency to Redis, tens of ms on a loaded machine: 50 ms of slack allowed.
      assert.ok(gap >= limiter.duration - 50, `jobs ${i} and ${i + limiter.max} started ${gap} ms apart`);
    }
    assert.ok(started.at(-1) - started[0] >= 2 * limiter.duration - 50, '15 jobs at 5/s need at least 2 s');
  } finally {
    await worker.close();
    await obliterate(queue);
  }
});
