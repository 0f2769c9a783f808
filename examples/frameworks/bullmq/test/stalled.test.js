// A worker killed mid-job leaves the job "active" with a lock nobody renews; once the
// lock expires, the stalled-job check moves it back to wait (or, past maxStalledCount,
// fails it with "job stalled more than allowable limit").
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { createWorker } = require('../worker');
const { createQueue, enqueue } = require('../producer');
const { queueName, waitFor, obliterate } = require('./helpers');

// Short lock and check interval so the test takes seconds, not a minute.
const fast = { lockDuration: 1_000, stalledInterval: 500 };

// Start `node worker.js QUEUE` in its own process and SIGKILL it as soon as it has
// taken a job: no close(), no lock release, exactly like an OOM kill.
async function killWorkerMidJob(name) {
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'worker.js'), name], {
    env: { ...process.env, WORKER_OPTIONS: JSON.stringify(fast) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await waitFor('the child worker to take the job', () => /"event":"active"/.test(child.stdout.read()?.toString() ?? ''), { timeoutMs: 15_000 });
  } finally {
    child.kill('SIGKILL');
  }
  await exited;
}

test('a job whose worker was killed is recovered by another worker', async () => {
  const name = queueName('stalled');
  const queue = createQueue(name);
  let worker;
  try {
    const job = await enqueue(queue, 'sleep', { ms: 60_000 });
    await killWorkerMidJob(name);
    assert.equal(await job.getState(), 'active'); // still owned by the dead worker
    const stalled = [];
    worker = createWorker(name, { async sleep() { return { handledBy: 'survivor' }; } }, fast);
    worker.on('stalled', (id) => stalled.push(id));
    await waitFor('the job to complete', async () => (await job.getState()) === 'completed');
    assert.deepEqual(stalled, [job.id]);
    const finished = await queue.getJob(job.id);
    assert.deepEqual(finished.returnvalue, { handledBy: 'survivor' });
    assert.equal(finished.attemptsStarted, 2); // once in the dead worker, once here
  } finally {
    await worker?.close();
    await obliterate(queue);
  }
});

test('past maxStalledCount the job fails without retries: "job stalled more than allowable limit"', async () => {
  const name = queueName('stalled-limit');
  const queue = createQueue(name);
  let worker;
  try {
    const job = await enqueue(queue, 'sleep', { ms: 60_000 }); // attempts: 5 by default in config.js
    await killWorkerMidJob(name);
    worker = createWorker(name, { async sleep() { return 'never runs'; } }, { ...fast, maxStalledCount: 0 });
    await waitFor('the job to fail', async () => (await job.getState()) === 'failed');
    const failed = await queue.getJob(job.id);
    assert.equal(failed.failedReason, 'job stalled more than allowable limit');
    assert.equal(failed.opts.attempts, 5);
    assert.equal(failed.attemptsMade, 1); // the remaining four attempts were not used
  } finally {
    await worker?.close();
    await obliterate(queue);
  }
});
