// SIGTERM: the worker stops taking jobs, finishes the running one, and exits 0; if the
// job outlasts the deadline, the process exits 1 and leaves the job for the stalled check.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { createQueue, enqueue } = require('../producer');
const { queueName, waitFor, obliterate } = require('./helpers');

async function terminateMidJob(name, deadlineMs) {
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'worker.js'), name], {
    env: { ...process.env, SHUTDOWN_DEADLINE_MS: String(deadlineMs) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await waitFor('the worker to take the job', () => /"event":"active"/.test(child.stdout.read()?.toString() ?? ''), { timeoutMs: 15_000 });
    child.kill('SIGTERM');
    const tooLate = new Promise((_, reject) => {
      setTimeout(() => reject(new Error('worker did not exit within 10 s of SIGTERM')), 10_000).unref();
    });
    return await Promise.race([exited, tooLate]);
  } finally {
    child.kill('SIGKILL'); // no-op if it has exited
  }
}

test('on SIGTERM the worker finishes the running job, then exits 0', async () => {
  const name = queueName('shutdown');
  const queue = createQueue(name);
  try {
    const job = await enqueue(queue, 'sleep', { ms: 500 });
    assert.equal(await terminateMidJob(name, 5_000), 0);
    assert.equal(await job.getState(), 'completed');
  } finally {
    await obliterate(queue);
  }
});

test('a job longer than the shutdown deadline is left active for the stalled check', async () => {
  const name = queueName('shutdown-deadline');
  const queue = createQueue(name);
  try {
    const job = await enqueue(queue, 'sleep', { ms: 60_000 });
    assert.equal(await terminateMidJob(name, 200), 1);
    assert.equal(await job.getState(), 'active'); // not lost: its lock expires, then it is retried
  } finally {
    await obliterate(queue);
  }
});
