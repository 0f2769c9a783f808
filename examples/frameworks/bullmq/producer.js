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

module.exports = { createQueue, enqueue };
