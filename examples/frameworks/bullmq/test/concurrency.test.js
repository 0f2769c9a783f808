// The configured concurrency is the observed peak of jobs running at once.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { createWorker } = require('../worker');
const { createQueue, enqueue } = require('../producer');
const { workerOptions } = require('../config');
const { queueName, waitFor, obliterate } = require('./helpers');

for (const concurrency of [1, workerOptions.concurrency]) {
  test(`a worker with concurrency ${concurrency} runs at most ${concurrency} jobs at once, and reaches it`, async () => {
    const name = queueName('concurrency');
    const queue = createQueue(name);
    let running = 0;
    let peak = 0;
    let done = 0;
    const worker = createWorker(
      name,
      {
        async io_bound() {
          running += 1;
          peak = Math.max(peak, running);
          await new Promise((resolve) => setTimeout(resolve, 100)); // an awaited HTTP call, say
          running -= 1;
          done += 1;
        },
      },
      { concurrency },
    );
    try {
      const jobs = 3 * concurrency;
      for (let i = 0; i < jobs; i++) await enqueue(queue, 'io_bound', { i });
      await waitFor(`${jobs} jobs done`, () => done === jobs);
      assert.equal(peak, concurrency);
    } finally {
      await worker.close();
      await obliterate(queue);
    }
  });
}
