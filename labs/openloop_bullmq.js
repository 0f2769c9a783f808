// The BullMQ worker of labs/openloop_frameworks.py (not a pattern: an instrument).
// `node openloop_bullmq.js QUEUE EVENTS CONCURRENCY` with REDIS_URL and BULLMQ_DIR (where the
// committed lockfile's node_modules are). Pushes onto the EVENTS list: "r -1 T" once ready,
// "s SEQ T" when a job starts, "a SEQ T" on the Worker's completed event (emitted after the
// moveToFinished script confirmed). T is CLOCK_MONOTONIC in seconds, like Python's
// time.monotonic(): process.hrtime reads it on Linux.
'use strict';

const path = require('path');
const { createRequire } = require('module');

const load = createRequire(path.join(process.env.BULLMQ_DIR, 'package.json'));
const { Worker } = load('bullmq');
const IORedis = load('ioredis');

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function main() {
  const [queue, events, concurrency] = process.argv.slice(2);
  const url = process.env.REDIS_URL;
  const log = new IORedis(url, { maxRetriesPerRequest: null });
  const worker = new Worker(queue, async (job) => {
    await log.rpush(events, `s ${job.data.seq} ${now()}`);
  }, { connection: { url, maxRetriesPerRequest: null }, concurrency: Number(concurrency) });
  worker.on('completed', (job) => { log.rpush(events, `a ${job.data.seq} ${now()}`); });
  worker.on('failed', (job, err) => {
    console.error(`job ${job && job.id} failed: ${err.message}`);
    process.exit(1);
  });
  const stop = async () => {
    await worker.close();
    await log.quit();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await worker.waitUntilReady();
  await log.rpush(events, `r -1 ${now()}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
