// The handbook's BullMQ worker (examples/frameworks/bullmq/worker.js: createWorker and
// closeOnSignals) as a lab worker: `node bullmq_worker.js` with REDIS_URL set.
// WORKER_OPTIONS (JSON) overrides worker options, SHUTDOWN_DEADLINE_MS is closeOnSignals'
// deadline, LAB_TIME_SCALE scales each job's seconds.
'use strict';

const path = require('node:path');

const BULLMQ_DIR = path.resolve(__dirname, '..', '..', 'examples', 'frameworks', 'bullmq');
const { createWorker, closeOnSignals } = require(path.join(BULLMQ_DIR, 'worker.js'));
const IORedis = require(path.join(BULLMQ_DIR, 'node_modules', 'ioredis'));

const scale = Number(process.env.LAB_TIME_SCALE ?? '1');
const recorder = new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });

const handlers = {
  async lab(args) {
    await recorder.hincrby('lab:starts', args.id, 1);
    await new Promise((resolve) => setTimeout(resolve, args.seconds * 1000 * scale));
    await recorder.hincrby('lab:finishes', args.id, 1);
    return { id: args.id };
  },
  // takes its process down on every attempt, as the kernel's OOM killer would
  async poison(args) {
    await recorder.hincrby('lab:starts', args.id, 1);
    process.kill(process.pid, 'SIGKILL');
  },
};

const worker = createWorker('lab', handlers, JSON.parse(process.env.WORKER_OPTIONS || '{}'));
closeOnSignals(worker, { deadlineMs: Number(process.env.SHUTDOWN_DEADLINE_MS || 25_000) });
