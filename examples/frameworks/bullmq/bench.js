// The BullMQ contender of the throughput benchmark (page: docs/frameworks/throughput.md).
// Run by labs/throughput.py as `node bench.js N BATCH [CONCURRENCY]`: enqueues N no-op jobs
// with addBulk, BATCH per call, then drains them with one Worker at CONCURRENCY (default 1:
// one job at a time, like the minimal contenders), and prints {"enqueue_seconds",
// "drain_seconds", "completed"} as JSON.
'use strict';

const { Queue, Worker } = require('bullmq');
const { workerConnection } = require('./config');

function positiveInteger(text, what) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${what} must be a positive integer, got ${text}`);
  }
  return value;
}

const seconds = (from, to) => Number(to - from) / 1e9;

async function main() {
  const n = positiveInteger(process.argv[2], 'N');
  const batch = positiveInteger(process.argv[3], 'BATCH');
  const concurrency = positiveInteger(process.argv[4] || '1', 'CONCURRENCY');
  const name = `bench-${process.pid}`;
  const queue = new Queue(name, { connection: workerConnection() });
  await queue.waitUntilReady();
  const jobOptions = { removeOnComplete: true, removeOnFail: true };

  const enqueueStart = process.hrtime.bigint();
  for (let start = 0; start < n; start += batch) {
    const chunk = [];
    for (let i = start; i < Math.min(n, start + batch); i++) {
      chunk.push({ name: 'noop', data: { i }, opts: jobOptions });
    }
    await queue.addBulk(chunk);
  }
  const enqueueEnd = process.hrtime.bigint();

  let completed = 0;
  let allDone;
  const finished = new Promise((resolve) => { allDone = resolve; });
  const worker = new Worker(name, async () => undefined, {
    connection: workerConnection(),
    concurrency,
    autorun: false,
  });
  worker.on('completed', () => {
    completed += 1;
    if (completed === n) allDone(process.hrtime.bigint());
  });
  worker.on('failed', (job, err) => {
    throw new Error(`job ${job && job.id} failed: ${err.message}`);
  });
  const drainStart = process.hrtime.bigint();
  worker.run();
  const drainEnd = await finished;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  process.stdout.write(JSON.stringify({
    enqueue_seconds: seconds(enqueueStart, enqueueEnd),
    drain_seconds: seconds(drainStart, drainEnd),
    completed,
  }) + '\n');
}

main().catch((err) => { console.error(err.stack || String(err)); process.exit(1); });
