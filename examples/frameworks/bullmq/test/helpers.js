// Shared by the *.test.js files: unique queue names, bounded waits, cleanup.
'use strict';

const { randomUUID } = require('node:crypto');
const { execFile } = require('node:child_process');
const path = require('node:path');
const { Queue, QueueEvents } = require('bullmq');
const { workerConnection } = require('../config');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');

function queueName(prefix) {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

// Poll `check` until it returns a truthy value; fail with `what` after `timeoutMs`.
async function waitFor(what, check, { timeoutMs = 10_000, everyMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

// A Queue handle for inspection and cleanup (tests add jobs through producer.js).
function inspector(name) {
  return new Queue(name, { connection: workerConnection() });
}

async function obliterate(queue) {
  await queue.obliterate({ force: true });
  await queue.close();
}

// Run the Python side of the bridge (examples/frameworks/bullmq/bridge.py). The pytest
// wrapper sets PYTHON to its interpreter; without it the bridge tests are skipped.
function python(args, { timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      process.env.PYTHON,
      ['-m', 'examples.frameworks.bullmq.bridge', ...args],
      { cwd: REPO_ROOT, timeout: timeoutMs, env: process.env },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`python bridge ${args.join(' ')} failed: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

module.exports = { queueName, waitFor, inspector, obliterate, python, QueueEvents };
