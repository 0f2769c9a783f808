// The BullMQ side of the failover lab (labs/failover_bullmq.py starts it): a producer that
// adds numbered jobs at a steady rate and a worker, both through ioredis' Sentinel options,
// on the lab's Sentinel group. Everything it learns goes to files, outside Redis:
//   LAB_LEDGER   one line per add: "ok|err <job id> <start ms> <end ms> [error name]"
//   LAB_EFFECTS  one line per run of a job (the processor writes the id first)
// The producer stops when LAB_STOP exists; the worker then drains the queue at full speed,
// writes "drained" to the ledger and the process exits.
'use strict';

const fs = require('node:fs');
const { performance } = require('node:perf_hooks');
const { Queue, Worker } = require('bullmq');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set`);
  return value;
};
const sentinels = env('LAB_SENTINELS').split(',').map((item) => {
  const [host, port] = item.split(':');
  return { host, port: Number(port) };
});
const group = {
  sentinels, // ioredis asks them for the primary, and again after a failover
  name: env('LAB_SERVICE'),
  password: env('LAB_PASSWORD'), // the data servers'
  sentinelPassword: env('LAB_SENTINEL_PASSWORD'), // the Sentinels' own
  connectTimeout: 500,
  // drop the connection when the Sentinels announce a new primary (+switch-master): a
  // primary that vanished with its network sends no reset, and the socket would wait
  failoverDetector: true,
};
const rate = Number(env('LAB_RATE'));
const workMs = Number(env('LAB_WORK_MS'));
const ledger = fs.openSync(env('LAB_LEDGER'), 'a');
const effects = fs.openSync(env('LAB_EFFECTS'), 'a');
const stopFile = env('LAB_STOP');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The handbook's producer settings: fail an add at once rather than queue it in memory.
const queue = new Queue('lab', {
  connection: {
    ...group, maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 500,
  },
});
queue.on('error', () => {}); // counted per add below
let draining = false;
const worker = new Worker('lab', async (job) => {
  fs.writeSync(effects, `${job.id}\n`);
  if (!draining) await sleep(workMs);
}, {
  connection: { ...group, maxRetriesPerRequest: null },
  concurrency: 2,
  lockDuration: 5000, // the lab brings stalled-job recovery forward, like Celery's timeout
  stalledInterval: 5000,
});
worker.on('error', () => {});

async function produce() {
  let n = 0;
  let due = performance.now();
  while (!fs.existsSync(stopFile)) {
    const id = `bull-${String(n).padStart(6, '0')}`;
    const start = performance.now();
    let line;
    try {
      await queue.add('lab', { n }, { jobId: id, removeOnComplete: true });
      line = `ok ${id} ${start} ${performance.now()}`;
    } catch (err) {
      // a plain Error says what in its message: "Stream isn't writeable ..."
      const what = err.name && err.name !== 'Error'
        ? err.name : String(err.message).split(' ', 3).join('-');
      line = `err ${id} ${start} ${performance.now()} ${what}`;
    }
    fs.writeSync(ledger, `${line}\n`);
    n += 1;
    due += 1000 / rate;
    await sleep(Math.max(0, due - performance.now()));
  }
}

async function main() {
  await produce();
  draining = true;
  for (;;) {
    try {
      const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized');
      if (Object.values(counts).every((c) => c === 0)) break;
    } catch {
      // the group is still failing over: ask again
    }
    await sleep(50);
  }
  const failed = await queue.getJobCounts('failed');
  fs.writeSync(ledger, `drained ${failed.failed}\n`);
  // The ledger is complete. A connection still reconnecting after the failover can refuse
  // close()'s QUIT ("Stream isn't writeable"): say so, but it is not a failure of the run.
  for (const part of [worker, queue]) {
    try {
      await part.close();
    } catch (err) {
      console.error(`closing after the run: ${err.message}`);
    }
  }
}

main().then(() => process.exit(0), (err) => {
  console.error(err);
  process.exit(1);
});
