// Production settings for BullMQ 6.7 queues and workers (page: docs/frameworks/bullmq.md).
// Every number below is a choice explained on the page; the library's own defaults are in
// examples/frameworks/choosing_a_framework/defaults.py, checked against node_modules/bullmq.
'use strict';

// [start:connection]
// The server comes from REDIS_URL (with its password), never from code:
//   REDIS_URL=rediss://USER:PASSWORD@redis.internal:6380/0, whole from the secret store
//   (ioredis checks the certificate; a private CA goes in NODE_EXTRA_CA_CERTS)
function redisUrl() {
  const url = process.env.REDIS_URL;
  if (!url || !/^rediss?:\/\//.test(url)) {
    throw new Error(
      'REDIS_URL must be set to a redis:// or rediss:// URL (with the password in it)',
    );
  }
  return url;
}

// Workers block on Redis and must never give up a command: BullMQ forces
// maxRetriesPerRequest to null for them (and warns if you set anything else).
function workerConnection() {
  return { url: redisUrl(), maxRetriesPerRequest: null };
}

// Producers run inside request handlers: when Redis is down, fail the request
// after one retry instead of queueing commands in memory without bound.
function producerConnection() {
  return { url: redisUrl(), maxRetriesPerRequest: 1, enableOfflineQueue: false };
}
// [end:connection]

// [start:worker-options]
// One Node process runs `concurrency` handlers at once on its event loop: raise it for
// I/O-bound handlers (HTTP calls, database queries); keep it at 1 and run more
// processes, or use a sandboxed processor, when handlers burn CPU.
const workerOptions = {
  concurrency: 8,
  lockDuration: 30_000, // ms a job stays owned without a lock renewal (renewed every 15 s)
  stalledInterval: 30_000, // ms between checks for jobs whose lock expired
  maxStalledCount: 1, // a job may stall once; the second stall fails it for good
};
// [end:worker-options]

// [start:limiter]
// For a queue that calls a partner API allowed 5 requests a second: at most 5 jobs
// start per second across every worker serving the queue (the counter lives in Redis),
// which no concurrency setting can promise.
const partnerApiLimiter = { max: 5, duration: 1_000 };
// [end:limiter]

// [start:job-options]
// Defaults for every job added through the Queue (a job's own options win).
const defaultJobOptions = {
  attempts: 5, // the first run plus four retries
  backoff: { type: 'exponential', delay: 1_000, jitter: 0.5 }, // 0.5-1 s, 1-2 s, 2-4 s, 4-8 s
  removeOnComplete: { age: 24 * 3600, count: 1_000 }, // seconds; keep at most 1000 for a day
  removeOnFail: { age: 7 * 24 * 3600 }, // failed jobs are the dead letters: keep a week
};
// [end:job-options]

module.exports = {
  redisUrl,
  workerConnection,
  producerConnection,
  workerOptions,
  partnerApiLimiter,
  defaultJobOptions,
};
