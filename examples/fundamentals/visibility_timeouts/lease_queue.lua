-- Scripts of the lease queue (examples/fundamentals/visibility_timeouts/lease_queue.py), one per section.
-- Keys, for every script: KEYS[1] ready list of job ids, KEYS[2] leases (sorted set:
-- job id -> deadline), KEYS[3] jobs (hash: job id -> message), KEYS[4] lease tokens
-- (hash: job id -> token of the current holder), KEYS[5] deliveries (hash: job id ->
-- times handed out), KEYS[6] dead-letter list.
-- Time comes from the caller (ARGV), so a test can drive it with a fake clock.

-- [start:enqueue]
-- ARGV: job id, message. Refuses an id that is already in the queue.
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[1], ARGV[1])
return 1
-- [end:enqueue]

-- [start:claim]
-- ARGV: now, lease seconds, new token. Returns {id, message, deliveries} or nil.
local id = redis.call('RPOP', KEYS[1])
if not id then
  return nil
end
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
redis.call('HSET', KEYS[4], id, ARGV[3])
local deliveries = redis.call('HINCRBY', KEYS[5], id, 1)
return {id, redis.call('HGET', KEYS[3], id), deliveries}
-- [end:claim]

-- [start:extend]
-- ARGV: job id, token, new deadline. Returns 1, or 0 if the caller no longer holds the lease.
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', tonumber(ARGV[3]), ARGV[1])
return 1
-- [end:extend]

-- [start:ack]
-- ARGV: job id, token, and optionally a dead-letter record (JSON) and the list's cap: with a
-- record the job moves to the dead letters (trimmed to the newest cap records) instead of
-- being deleted. Returns 1, or 0 if the caller no longer holds the lease.
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
if ARGV[3] then
  redis.call('LPUSH', KEYS[6], ARGV[3])
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[4]) - 1)
end
return 1
-- [end:ack]

-- [start:reap]
-- ARGV: now, max deliveries, batch size, dead-letter cap. Takes back every lease whose
-- deadline has passed: the job goes to the front of the ready list, or to the dead letters
-- (trimmed to the cap) once it has been handed out max-deliveries times (it keeps killing or
-- outliving its workers). Returns {requeued, dead}.
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE',
  'LIMIT', 0, tonumber(ARGV[3]))
local requeued, dead = 0, 0
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[4], id)
  local deliveries = tonumber(redis.call('HGET', KEYS[5], id) or '0')
  if deliveries >= tonumber(ARGV[2]) then
    local record = cjson.encode({
      raw = redis.call('HGET', KEYS[3], id), at = now, attempts = deliveries,
      reason = 'lease expired on each of its ' .. deliveries .. ' deliveries'})
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('LPUSH', KEYS[6], record)
    dead = dead + 1
  else
    redis.call('RPUSH', KEYS[1], id)
    requeued = requeued + 1
  end
end
if dead > 0 then
  redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[4]) - 1)
end
return {requeued, dead}
-- [end:reap]
