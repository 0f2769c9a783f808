// BullMQ 6.7 job schedulers in the situations of docs/frameworks/scheduled-jobs.md.
// Run by test_bullmq_schedulers.py with NODE_PATH pointing at the BullMQ example's node_modules.
// BullMQ reads Date.now(): the missed-slot and overlap tests wait for real time to pass
// (a few hundred milliseconds), polling with a deadline.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { Queue, Worker } = require('bullmq');
const { getNextMillis } = require('bullmq');

const BULLMQ = path.resolve(__dirname, '..', '..', '..', 'examples', 'frameworks', 'bullmq');
const { workerConnection } = require(path.join(BULLMQ, 'config'));
const { queueName, waitFor, obliterate } = require(path.join(BULLMQ, 'test', 'helpers'));

const slotOf = (jobId) => Number(jobId.split(':').pop()); // repeat:<scheduler id>:<millis>

test('DST: a daily 02:30 Europe/Berlin runs once, at 03:30 in the gap and at the first 02:30', () => {
  const opts = { pattern: '30 2 * * *', tz: 'Europe/Berlin' };
  const next = (iso) => new Date(getNextMillis(Date.parse(iso), opts)).toISOString();
  assert.equal(next('2026-03-28T12:00:00Z'), '2026-03-29T01:30:00.000Z');
  assert.equal(next('2026-10-24T12:00:00Z'), '2026-10-25T00:30:00.000Z');
  assert.equal(next('2026-10-25T00:30:05Z'), '2026-10-26T01:30:00.000Z'); // not 01:30Z that day
});

test('two processes upserting one scheduler make one scheduler and one job per slot', async () => {
  const name = queueName('sched-upsert');
  const [a, b] = [new Queue(name, { connection: workerConnection() }),
    new Queue(name, { connection: workerConnection() })];
  try {
    await Promise.all([a, b].map((q) => q.upsertJobScheduler('report', { every: 60_000 },
      { name: 'report', data: {} })));
    assert.equal((await a.getJobSchedulers()).length, 1);
    const jobs = await a.getJobs(['delayed', 'waiting']);
    assert.equal(jobs.length, 1);
    assert.match(jobs[0].id, /^repeat:report:\d+$/); // the slot's time is in the job id
    assert.ok(Math.abs(slotOf(jobs[0].id) - Date.now()) < 5_000); // `every`: the first runs now
  } finally {
    await b.close();
    await obliterate(a);
  }
});

test('slots missed while no worker ran collapse into one run; the next is counted from now', async () => {
  const name = queueName('sched-missed');
  const queue = new Queue(name, { connection: workerConnection() });
  const every = 200;
  let worker;
  try {
    await queue.upsertJobScheduler('tick', { every }, { name: 'tick', data: {} });
    const [first] = await queue.getJobs(['delayed', 'waiting']);
    await waitFor('six slots to pass', () => Date.now() > slotOf(first.id) + 6 * every);
    assert.equal((await queue.getJobs(['delayed', 'waiting'])).length, 1); // nothing piled up
    const seen = [];
    worker = new Worker(name, async (job) => { seen.push(slotOf(job.id)); },
      { connection: workerConnection() });
    await waitFor('two runs', () => seen.length >= 2);
    assert.ok(seen[1] - seen[0] >= 6 * every, `runs at slots ${seen}: missed slots not replayed`);
  } finally {
    if (worker) await worker.close();
    await obliterate(queue);
  }
});

test('a run longer than the interval overlaps the next one (the next job exists once it starts)',
  async () => {
    const name = queueName('sched-overlap');
    const queue = new Queue(name, { connection: workerConnection() });
    let active = 0;
    let maxActive = 0;
    let release;
    const done = new Promise((resolve) => { release = resolve; });
    const slow = async () => {
      active += 1;
      maxActive = Math.max(maxActive, active);
      if (active >= 2) release();
      await Promise.race([done, new Promise((r) => setTimeout(r, 5_000))]);
      active -= 1;
    };
    const workers = [1, 2].map(() => new Worker(name, slow, { connection: workerConnection() }));
    try {
      await queue.upsertJobScheduler('slow', { every: 200 }, { name: 'slow', data: {} });
      await waitFor('two runs at once', () => maxActive >= 2, { timeoutMs: 8_000 });
    } finally {
      release();
      await Promise.all(workers.map((w) => w.close()));
      await obliterate(queue);
    }
  });
