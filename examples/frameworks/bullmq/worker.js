// A BullMQ 6.7 worker that runs handbook envelopes and shuts down cleanly on SIGTERM
// (page: docs/frameworks/bullmq.md).
//
//   REDIS_URL="$(cat /run/secrets/redis-url)" node worker.js emails
'use strict';

// [start:imports]
const { Worker, UnrecoverableError } = require('bullmq');
const { workerConnection, workerOptions } = require('./config');
const { parseEnvelope } = require('./envelope');
// [end:imports]

// [start:create-worker]
// `handlers` maps an envelope's task to an async function of its args. Only its own
// properties count: `handlers[task]` alone would find Object.prototype's `constructor` or
// `toString` for a job that names them, and "succeed" without running any handler.
function processorFor(handlers) {
  return async (job) => {
    const envelope = parseEnvelope(job.data);
    const handler = Object.hasOwn(handlers, envelope.task) ? handlers[envelope.task] : null;
    if (typeof handler !== 'function') {
      throw new UnrecoverableError(`malformed job: no handler for task '${envelope.task}'`);
    }
    return handler(envelope.args, job);
  };
}

function createWorker(queueName, handlers, overrides = {}) {
  const worker = new Worker(queueName, processorFor(handlers), {
    connection: workerConnection(),
    ...workerOptions,
    ...overrides,
  });
  worker.on('failed', (job, err) => {
    console.error(`job ${job?.id} (${job?.name}) failed: ${err.message}`);
  });
  // without it, errors crash Node
  worker.on('error', (err) => console.error(`worker error: ${err.message}`));
  return worker;
}
// [end:create-worker]

// [start:shutdown]
// On SIGTERM stop taking jobs and wait for the running ones: worker.close() resolves
// when they have finished. Give it less time than the orchestrator's grace period
// (Kubernetes: terminationGracePeriodSeconds, 30 s by default); past that deadline
// exit anyway: the unfinished jobs keep their lock until it expires and then come back
// through the stalled-job check, so they run again rather than being lost.
function closeOnSignals(
  worker,
  { deadlineMs = 25_000, signals = ['SIGTERM', 'SIGINT'], exit = process.exit } = {},
) {
  let closing = null;
  const onSignal = (signal) => {
    if (closing) return;
    console.error(`${signal}: closing worker, waiting up to ${deadlineMs} ms for running jobs`);
    const timer = setTimeout(() => {
      console.error(
        'running jobs did not finish in time; exiting, they will be retried as stalled',
      );
      exit(1);
    }, deadlineMs);
    closing = worker.close().then(() => {
      clearTimeout(timer);
      exit(0);
    });
  };
  for (const signal of signals) process.once(signal, onSignal);
  return () => closing;
}
// [end:shutdown]

// The demo handlers the tests and the command line use.
const demoHandlers = {
  async send_welcome(args) {
    return { handledBy: 'node', user: args.user };
  },
  async sleep(args) {
    await new Promise((resolve) => setTimeout(resolve, args.ms));
    return { handledBy: 'node', slept: args.ms };
  },
};

if (require.main === module) {
  const queueName = process.argv[2];
  if (!queueName) {
    console.error('usage: node worker.js QUEUE');
    process.exit(2);
  }
  const worker = createWorker(queueName, demoHandlers, JSON.parse(process.env.WORKER_OPTIONS || '{}'));
  closeOnSignals(worker, { deadlineMs: Number(process.env.SHUTDOWN_DEADLINE_MS || 25_000) });
  worker.on('active', (job) => console.log(JSON.stringify({ event: 'active', id: job.id })));
  worker.on('ready', () => console.log(JSON.stringify({ event: 'ready' })));
}

module.exports = { createWorker, processorFor, closeOnSignals, demoHandlers };
