import { createHash } from 'node:crypto';
import { mintFenceLua } from './fencing-clock';
import { channelLua } from './redis-lock-keys';
import { FENCE_OF, RECORD_OF, recordTtlLua, stampLua } from './redis-holder-record';

/**
 * The Lua scripts of the Redis backend. Keys and their one KEYS order are in
 * `redis-lock-keys.ts`, the holder record they write in `redis-holder-record.ts`; every
 * script fully expanded is pinned in test/redis/__snapshots__/redis-lock-scripts.spec.ts.snap.
 */

/**
 * Mints the fencing token of a grant whose lease was just set and writes its holder record.
 * `stamp(fence_key, holder_key, token, ttl, tail)`; `stamp_grant(fence_key, holder_key,
 * offset)` reads token, ttlMs and the record's tail (`recordTail()`) from ARGV after `offset`.
 * Everything but the fence is prepared by the client: each Lua call and each concatenated
 * piece costs Redis time on every acquire (bench/RESULTS.md, section 1).
 */
export const STAMP_GRANT = `
local function stamp(fence_key, holder_key, token, ttl, tail)
  ${stampLua('fence_key', 'holder_key', 'token', 'ttl', 'tail')}
  return fence
end
local function stamp_grant(fence_key, holder_key, offset)
  return stamp(fence_key, holder_key, ARGV[offset + 1], ARGV[offset + 2], ARGV[offset + 3])
end
`;

/** How many ARGV entries one grant takes (see `stamp_grant`). */
export const GRANT_ARGS = 3;

export interface LockScript {
  /** Fixed key count, or `undefined` when the caller passes it (batched extend). */
  numberOfKeys?: number;
  lua: string;
  /** SHA1 of `lua`, for EVALSHA. */
  sha: string;
}

export function lockScript(lua: string, numberOfKeys?: number): LockScript {
  return { numberOfKeys, lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/** What the lease holds while readers hold the lock (see `holder-set.scripts.ts`). */
export const SHARED_MARKER = 'shared:';
/** What the lease holds, followed by N, while `limit: N` permits are held. */
export const LIMIT_MARKER = 'limit:';

/**
 * Lua: `value` (a lease key's content) is the marker of a lock held by several holders, shared
 * (`shared:`) or permits (`limit:<N>`; see `holder-set.scripts.ts`). Tokens never contain `:`.
 */
export const IS_MULTI = `
local function is_multi(value)
  return value ~= false and ${multiMarkerLua('value')}
end
`;

/** Lua expression: the string `value` is a shared or permit marker (see `IS_MULTI`). */
export function multiMarkerLua(value: string): string {
  return `(${value} == '${SHARED_MARKER}' or string.sub(${value}, 1, ${LIMIT_MARKER.length}) == '${LIMIT_MARKER}')`;
}

/**
 * KEYS: lease, fence, holder. ARGV: the grant's 3 arguments.
 * Returns the fencing token (>= 1) when granted, else `-2 - pttl` (<= -1; pttl is the holder's
 * remaining lease, -1 for none): one integer, no table. The hottest script, so it defines no
 * Lua function either: a table reply and two closures were ~3.5 of its ~13 µs (bench/NOTES.md).
 * Only a miss on a key held by `limit` permits answers a table, `{N}`: asking for a plain lock
 * there is a caller error (`limitInUse`), not contention.
 */
export const ACQUIRE = lockScript(
  `
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local limit = string.match(redis.call('GET', KEYS[1]), '^${LIMIT_MARKER}(%d+)$')
  if limit then return {tonumber(limit)} end
  return -2 - redis.call('PTTL', KEYS[1])
end
${stampLua('KEYS[2]', 'KEYS[3]', 'ARGV[1]', 'ARGV[2]', 'ARGV[3]')}
return fence
`,
  3,
);

/** What the lease holds while it is kept for the first queued waiter. */
export const RESERVED_FOR = 'queued:';

/** Message on the release channel telling waiter `token` the lease was passed to it: `granted⏎token⏎fence`. */
export const GRANTED_MESSAGE = 'granted';

/**
 * Lua: Redis' clock in ms. Writes after TIME need effects replication, the default since
 * Redis 5 (the oldest server these scripts support).
 */
export const NOW_MS = `
local function now_ms()
  local now = redis.call('TIME')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
`;

/**
 * ACQUIRE for a caller that will wait; its token is the same on every attempt of one wait.
 * KEYS: lease, fence, holder, queue, waiting. ARGV: the grant's 3 arguments, then the queue's
 * lifetime (ms). Takes a free lease, one kept for this token, or confirms one already passed
 * to it (refreshing its expiry, since the caller measures the lease from this call).
 * Otherwise puts the token at the end of the queue unless it is in it already (LPOS needs
 * Redis >= 6.0.6; older servers just do not queue) and records when it was last seen and its
 * grant arguments, so a release can pass the lease on without a further round trip.
 * Returns `{1, fencingToken}` when granted, `{0, pttl}` (the holder's remaining lease) when not,
 * `{2, N}` without queueing when `limit: N` permits hold the key (a caller error).
 */
export const ACQUIRE_OR_QUEUE = lockScript(
  `${STAMP_GRANT}${NOW_MS}${FENCE_OF}
local token = ARGV[1]
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then
  redis.call('LREM', KEYS[4], 1, token)
  redis.call('HDEL', KEYS[5], token)
  return {1, stamp_grant(KEYS[2], KEYS[3], 0)}
end
local current = redis.call('GET', KEYS[1])
if current == token then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(fence_of(redis.call('GET', KEYS[3]))) or 0}
end
if current == '${RESERVED_FOR}' .. token then
  redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
  return {1, stamp_grant(KEYS[2], KEYS[3], 0)}
end
local limit = string.match(current, '^${LIMIT_MARKER}(%d+)$')
if limit then return {2, tonumber(limit)} end
if redis.pcall('LPOS', KEYS[4], token) == false then redis.call('RPUSH', KEYS[4], token) end
redis.call('HSET', KEYS[5], token, now_ms() .. '\\n' .. ARGV[2] .. ARGV[3])
if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
end
return {0, redis.call('PTTL', KEYS[1])}
`,
  5,
);

/** A queued waiter Redis saw this recently (ms) gets the lease passed on release (see `turnScripts`). */
export const PASS_FRESH_MS = 1_000;

/**
 * Lua: after the lease was deleted, give the next turn to `ticket`, the waiter popped from the
 * queue (see `popTurn`). Seen within PASS_FRESH_MS: the lease is set to its token with its
 * TTL and record, and "granted" is published: it holds the lock without another round trip.
 * One not seen for longer: the lease is kept for it for `reservationMs` (it asks again when
 * woken); a waiter that died in the queue costs one reservation, then the lease is free.
 * The channel is the lease key + `RELEASED_SUFFIX`, client keyPrefix included (see `channelLua`).
 */
export function giveTurnLua(reservationMs: number): string {
  return `
local function give_turn(ticket, lease_key, fence_key, holder_key, waiting_key)
  local channel = ${channelLua('lease_key')}
  local entry = redis.call('HGET', waiting_key, ticket)
  redis.call('HDEL', waiting_key, ticket)
  local seen_at, ttl, tail
  if entry then seen_at, ttl, tail = string.match(entry, '^(%d+)\\n(%d+)(\\n.*)$') end
  if seen_at and now_ms() - tonumber(seen_at) <= ${PASS_FRESH_MS} then
    redis.call('SET', lease_key, ticket, 'PX', ttl)
    local fence = stamp(fence_key, holder_key, ticket, ttl, tail)
    redis.call('PUBLISH', channel, '${GRANTED_MESSAGE}\\n' .. ticket .. '\\n' .. string.format('%.0f', fence))
    return
  end
  redis.call('SET', lease_key, '${RESERVED_FOR}' .. ticket, 'PX', ${reservationMs})
  redis.call('PUBLISH', channel, 'released')
end
`;
}

/**
 * Lua: pop the next queued waiter into `local ticket`; with none, publish "released" and
 * return `done` (the rest of the script is for passing the turn to `ticket`).
 */
function popTurn(leaseKey: string, queueKey: string, done: string): string {
  return `local ticket = redis.call('LPOP', ${queueKey})
  if not ticket then
    redis.call('PUBLISH', ${channelLua(leaseKey)}, 'released')
    return ${done}
  end`;
}

/**
 * Several locks, all or none. KEYS: lease, fence, holder of each lock. ARGV: the 3 grant
 * arguments of each lock, in the same order. Every lease is checked before any is set, so
 * a miss writes nothing. Returns `{1, fence1, fence2, ...}` when all were granted, else
 * `{0, n1, pttl1, limit1, n2, ...}` for each lock n found held (pttl -1: held without expiry;
 * limit N when `limit: N` permits hold it, a caller error, else 0).
 */
export const ACQUIRE_ALL = lockScript(
  `${STAMP_GRANT}
local held = {0}
for n = 1, #KEYS / 3 do
  local pttl = redis.call('PTTL', KEYS[3 * n - 2])
  if pttl ~= -2 then
    held[#held + 1] = n
    held[#held + 1] = pttl
    held[#held + 1] = tonumber(string.match(redis.call('GET', KEYS[3 * n - 2]), '^${LIMIT_MARKER}(%d+)$')) or 0
  end
end
if #held > 1 then return held end
local fences = {1}
for n = 1, #KEYS / 3 do
  local offset = ${GRANT_ARGS} * (n - 1)
  redis.call('SET', KEYS[3 * n - 2], ARGV[offset + 1], 'PX', ARGV[offset + 2])
  fences[n + 1] = stamp_grant(KEYS[3 * n - 1], KEYS[3 * n], offset)
end
return fences
`,
);

/**
 * Passes a held lease to a new grant in one step: checks the old token (ARGV[4]), sets the
 * new token with the new TTL, mints a fencing token and rewrites the holder record.
 * Returns the fencing token, or `false` (nil) when the old token no longer holds the lease.
 */
export const HAND_OVER = lockScript(
  `${STAMP_GRANT}
if redis.call('GET', KEYS[1]) ~= ARGV[4] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return stamp_grant(KEYS[2], KEYS[3], 0)
`,
  3,
);


/**
 * The scripts that end a turn, with the backend's `queueReservationMs` written in (one fewer
 * argument on every release). KEYS of both: lease, fence, holder, queue, waiting.
 *
 * release — compare-and-delete. ARGV: token. Returns 1 released (and the next turn given,
 * see `give_turn`), 0 expired, -1 held by another token. An expired lease's record is removed
 * too when it is still ours, so it stops showing as stale.
 *
 * leaveQueue — a waiter gives up. ARGV: its token. Removes it from the queue; a turn kept for
 * it, or a lease already passed to it, goes to the next waiter (or is freed) at once. Returns 2
 * when the lock has several holders (shared or permits): a permit passed to the waiter, or the
 * waiters it kept out, are then `holderScripts().leaveQueue`'s to settle; else 0.
 */
export function turnScripts(reservationMs: number): { release: LockScript; leaveQueue: LockScript } {
  // Defined only where a turn is given: a release nobody waits for creates no Lua closure.
  const giving = `${STAMP_GRANT}${NOW_MS}${giveTurnLua(reservationMs)}
  give_turn(ticket, KEYS[1], KEYS[2], KEYS[3], KEYS[5])`;
  return {
    release: lockScript(
      `
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[3])
  ${popTurn('KEYS[1]', 'KEYS[4]', '1')}
  ${giving}
  return 1
end
${RECORD_OF}
if record_of(redis.call('GET', KEYS[3]), ARGV[1]) then redis.call('DEL', KEYS[3]) end
if current then return -1 end
return 0
`,
      5,
    ),
    leaveQueue: lockScript(
      `
redis.call('LREM', KEYS[4], 0, ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] and current ~= '${RESERVED_FOR}' .. ARGV[1] then
  ${IS_MULTI}
  return is_multi(current) and 2 or 0
end
if current == ARGV[1] then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[1])
${popTurn('KEYS[1]', 'KEYS[4]', '0')}
${giving}
return 0
`,
      5,
    ),
  };
}

/**
 * Compare-and-pexpire for many leases. KEYS: lease1, holder1, lease2, holder2, ...
 * ARGV: token1, ttl1, token2, ttl2, ... Returns 1/0 per lease, in order. The record's ttlMs
 * (its first field) is rewritten only when the lease length changed.
 */
export const EXTEND = lockScript(
  `
local result = {}
for n = 1, #KEYS / 2 do
  local lease, holder, token, ttl = KEYS[2 * n - 1], KEYS[2 * n], ARGV[2 * n - 1], ARGV[2 * n]
  if redis.call('GET', lease) == token then
    redis.call('PEXPIRE', lease, ttl)
    local record = redis.call('GET', holder)
    ${recordTtlLua((value) => `redis.call('SET', holder, ${value})`)}
    result[n] = 1
  else
    result[n] = 0
  end
end
return result
`,
);

/**
 * An operator's reap. KEYS: lease, fence, holder. ARGV: expected fencing token ('' for any).
 * Returns `{outcome, pttl, record or false}`, outcome one of released / not-held / changed-hands,
 * or multi (nothing done) when readers or permits hold the lock now: the holder-set reap's.
 * A reap moves the fence on, so even with nobody re-acquiring, the reaped holder's token is old.
 */
export const FORCE_RELEASE = lockScript(
  `${FENCE_OF}${IS_MULTI}
local pttl = redis.call('PTTL', KEYS[1])
local record = redis.call('GET', KEYS[3])
if pttl == -2 then
  if not record then return {'not-held', pttl, false} end
  -- A crashed holder's record: removing it is the reap the operator asked for.
  redis.call('DEL', KEYS[3])
  return {'released', pttl, record}
end
-- Taken by readers or permits since the caller looked: theirs to reap (holderScripts().forceRelease).
if is_multi(redis.call('GET', KEYS[1])) then return {'multi', pttl, false} end
if ARGV[1] ~= '' then
  if fence_of(record) ~= ARGV[1] then return {'changed-hands', pttl, record} end
end
redis.call('DEL', KEYS[1], KEYS[3])
${mintFenceLua('KEYS[2]', '0')}
redis.call('PUBLISH', ${channelLua('KEYS[1]')}, 'released')
return {'released', pttl, record}
`,
  3,
);

export const LOCK_SCRIPTS: readonly LockScript[] = [
  ACQUIRE,
  ACQUIRE_OR_QUEUE,
  ACQUIRE_ALL,
  HAND_OVER,
  EXTEND,
  FORCE_RELEASE,
];
