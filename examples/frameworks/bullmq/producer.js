// Adding handbook envelopes to a BullMQ 6.7 queue from a Node service
// (page: docs/frameworks/bullmq.md).
'use strict';

// [start:producer]
const { Queue } = require('bullmq');
const { producerConnection, defaultJobOptions } = require('./config');
const { newEnvelope } = require('./envelope');

function createQueue(queueName) {
  return new Queue(queueName, { connection: producerConnection(), defaultJobOptions });
}

// The envelope id doubles as BullMQ's jobId: adding the same id twice adds one job.
async function enqueue(queue, task, args, { id, ...jobOptions } = {}) {
  const envelope = newEnvelope(task, args, { id });
  return queue.add(task, envelope, { jobId: envelope.id, ...jobOptions });
}
// [end:producer]

// [start:dedup]
// One job per business key while one is waiting or running (BullMQ's `deduplication`): a
// second add returns the existing job's id and adds nothing. The key is deleted when that job
// completes or fails; with `ttlMs` it lives that long instead, even after the job finished
// ("at most one per ttlMs", a throttle).
async function enqueueUnlessPending(queue, task, args, dedupKey, { ttlMs } = {}) {
  const deduplication = ttlMs ? { id: dedupKey, ttl: ttlMs } : { id: dedupKey };
  return enqueue(queue, task, args, { deduplication });
}
// [end:dedup]

module.exports = { createQueue, enqueue, enqueueUnlessPending };
