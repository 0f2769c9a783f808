// The handbook's JSON job envelope (examples/envelope.py), checked on the Node side.
// A BullMQ job carries it as `data`, with the envelope's task as the job's name.
'use strict';

const { UnrecoverableError } = require('bullmq');

const SCHEMA_VERSION = 1;
const FIELDS = {
  id: 'string',
  task: 'string',
  args: 'object',
  created_at: 'number',
  attempts: 'number',
  headers: 'object',
};

// [start:parse]
// A job the worker cannot read will never succeed: fail it at once with the reason,
// as an UnrecoverableError, so BullMQ skips the remaining attempts and the job lands
// in the failed set (this queue's dead letters) with `failedReason` saying why.
function parseEnvelope(data) {
  const reject = (why) => {
    throw new UnrecoverableError(`malformed job: ${why}`);
  };
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    reject(`data is ${Array.isArray(data) ? 'an array' : typeof data}, not an object`);
  }
  if (data.v !== SCHEMA_VERSION) {
    reject(
      `unsupported envelope version ${JSON.stringify(data.v)} ` +
        `(this code reads ${SCHEMA_VERSION})`,
    );
  }
  for (const [name, kind] of Object.entries(FIELDS)) {
    const value = data[name];
    if (
      typeof value !== kind ||
      value === null ||
      (kind === 'object' && Array.isArray(value))
    ) {
      reject(`field '${name}' is missing or has the wrong type`);
    }
  }
  const unknown = Object.keys(data).filter((k) => k !== 'v' && !Object.hasOwn(FIELDS, k));
  if (unknown.length) reject(`unknown fields ${JSON.stringify(unknown.sort())}`);
  return data;
}
// [end:parse]

function newEnvelope(task, args, { id, headers } = {}) {
  if (typeof task !== 'string' || task === '') throw new TypeError('task must be a non-empty string');
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new TypeError(`args of task '${task}' must be an object`);
  }
  const envelope = {
    args,
    attempts: 0,
    created_at: Date.now() / 1000,
    headers: headers || {},
    id: id || require('node:crypto').randomUUID().replaceAll('-', ''),
    task,
    v: SCHEMA_VERSION,
  };
  JSON.stringify(envelope); // throws now on a cycle or a BigInt, not in the worker
  return envelope;
}

module.exports = { SCHEMA_VERSION, parseEnvelope, newEnvelope };
