// Idempotent producers on BullMQ 6.7: a jobId deduplicates only while the job is kept, and a
// deduplication id only while its job waits or runs (or for its ttl).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createWorker } = require('../worker');
const { createQueue, enqueue, enqueueUnlessPending } = require('../producer');
const { queueName, waitFor, obliterate } = require('./helpers');

async function withQueueAndWorker(prefix, body) {
  const name = queueName(prefix);
  const queue = createQueue(name);
  const runs = [];
  const worker = createWorker(name, { charge: async (args, job) => { runs.push(job.id); } }, {
    autorun: false,
  });
  try {
    await body({ queue, worker, runs });
  } finally {
    await worker.close();
    await obliterate(queue);
  }
}

test('a jobId deduplicates only as long as the finished job is kept', async () => {
  await withQueueAndWorker('jobid', async ({ queue, worker, runs }) => {
    const keepTwo = { removeOnComplete: { count: 2 } };
    const first = await enqueue(queue, 'charge', { order: 42 }, { id: 'order-42', ...keepTwo });
    const again = await enqueue(queue, 'charge', { order: 42 }, { id: 'order-42', ...keepTwo });
    assert.equal(again.id, first.id);
    assert.equal(await queue.getWaitingCount(), 1); // the second add added nothing
    worker.run();
    await waitFor('order-42 done', () => runs.length === 1);
    await waitFor('order-42 completed', async () => (await queue.getCompletedCount()) === 1);
    await enqueue(queue, 'charge', { order: 42 }, { id: 'order-42', ...keepTwo });
    assert.deepEqual(runs, ['order-42']); // still deduplicated: the completed job is kept
    for (const id of ['a', 'b']) await enqueue(queue, 'charge', {}, { id, ...keepTwo });
    await waitFor('two more done', () => runs.length === 3);
    await waitFor('order-42 trimmed', async () => !(await queue.getJob('order-42')));
    await enqueue(queue, 'charge', { order: 42 }, { id: 'order-42', ...keepTwo });
    await waitFor('order-42 run again', () => runs.length === 4);
    assert.deepEqual(runs, ['order-42', 'a', 'b', 'order-42']); // the window ended with the job
  });
});

test('a deduplication id holds while its job waits or runs, or for its ttl', async () => {
  await withQueueAndWorker('dedup', async ({ queue, worker, runs }) => {
    const adds = [];
    for (let i = 0; i < 3; i++) adds.push(await enqueueUnlessPending(queue, 'charge', { i }, 'rebuild-7'));
    assert.equal(new Set(adds.map((job) => job.id)).size, 1); // three adds, one job
    await enqueueUnlessPending(queue, 'charge', {}, 'digest-1', { ttlMs: 60_000 });
    worker.run();
    await waitFor('both jobs done', () => runs.length === 2);
    await waitFor('both completed', async () => (await queue.getCompletedCount()) === 2);
    const rebuild = await enqueueUnlessPending(queue, 'charge', {}, 'rebuild-7'); // key gone
    const digest = await enqueueUnlessPending(queue, 'charge', {}, 'digest-1', { ttlMs: 60_000 });
    await waitFor('the rebuild added again', () => runs.length === 3);
    assert.equal(runs[2], rebuild.id);
    assert.notEqual(rebuild.id, adds[0].id);
    assert.equal((await queue.getJob(digest.id)).finishedOn > 0, true); // the digest done earlier
    assert.equal(await queue.getWaitingCount(), 0); // the ttl still holds: nothing added
  });
});
