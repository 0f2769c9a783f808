"""The code of the page *BullMQ for Node.js services* (``docs/frameworks/bullmq.md``): a Node.js
project (``package.json``, producer, worker, tests) and a Python bridge that speaks the same
envelope.
"""
