import { createHash } from 'node:crypto';
import { mintFenceLua } from './fencing-clock';

/**
 * Key layout and Lua scripts of the Redis backend.
 *
 * One lock `K` (already carrying the module's keyPrefix) lives in these keys, all sharing
 * the hash tag `{E}` (E = K with `%` and `}` escaped) so every script stays in one slot of
 * a Redis Cluster:
 *   `{E}`          the lease: the holder's token, with a PX expiry
 *   `{E}:fence`    the last fencing token; expires a margin after the last grant's lease,
 *                  when Redis' clock alone is above it (see `fencing-clock.ts`)
 *   `{E}:holder`   the holder record, one packed string (see `HolderRecord`); no expiry,
 *                  deleted on release, so a record whose lease is gone is a holder that died
 *                  or lost its lease (shown as stale)
 *   `{E}:queue`    tokens of waiters, oldest first (only while some wait); on release the
 *                  lease passes to the first one (see `give_turn`)
 *   `{E}:waiting`  hash: waiter token -> when Redis last saw it, and its grant arguments
 * Release messages go to the channel `{E}:released` (channels are not keys: the scripts name it
 * after KEYS[1], so it carries the client's keyPrefix, and the subscriber adds that prefix).
 *
 * The record is one string rather than a hash because every Lua `redis.call` and every
 * script argument costs Redis time on the hot path: an 11-field HSET made the acquire script
 * cost ~10 µs against ~7 µs now (bench/RESULTS.md, section 1).
 */

export interface LockKeys {
  lease: string;
  fence: string;
  holder: string;
  queue: string;
  waiting: string;
  channel: string;
}

/** Suffix every holder-record key ends with; `list()` scans for it. */
export const HOLDER_SUFFIX = ':holder';

/**
 * `}` would end the hash tag early (a key starting with `}` would even give an empty tag and
 * scatter the lock over several slots), so it is escaped; `%` is escaped first to keep the
 * mapping one-to-one.
 */
export function escapeTag(key: string): string {
  // Most keys contain neither: skip two regex passes on every call.
  if (!key.includes('%') && !key.includes('}')) return key;
  return key.replace(/%/g, '%25').replace(/\}/g, '%7D');
}

/** Suffixes of a lock's other keys after its lease key (see the layout above). */
export const FENCE_SUFFIX = ':fence';
export const QUEUE_SUFFIX = ':queue';
export const WAITING_SUFFIX = ':waiting';

/** The lease key `{E}`; the lock's other keys are it plus a suffix. */
export function leaseKeyOf(key: string): string {
  return `{${escapeTag(key)}}`;
}

export function lockKeys(key: string): LockKeys {
  const lease = leaseKeyOf(key);
  return {
    lease,
    fence: lease + FENCE_SUFFIX,
    holder: lease + HOLDER_SUFFIX,
    queue: lease + QUEUE_SUFFIX,
    waiting: lease + WAITING_SUFFIX,
    channel: `${lease}:released`,
  };
}

/**
 * The holder record as stored: `ttlMs \n token \n fencingToken \n acquiredAt \n owner`, where
 * acquiredAt is the holder's clock (ms since the epoch) and `owner` the JSON of its
 * `LockOwner`, written last because it is the only field that may contain any character.
 * ttlMs comes first so the heartbeat can compare it with a prefix check.
 */
export interface HolderRecord {
  ttlMs: number;
  token: string;
  fencingToken: number;
  acquiredAt: number;
  owner: string;
}

const RECORD_FIELDS = 5;

/** The record's fields after the fencing token, as the last grant argument (see `stamp_grant`). */
export function recordTail(acquiredAt: number, ownerJson: string): string {
  return `\n${acquiredAt}\n${ownerJson}`;
}

/** Splits a stored record; `null` for anything that is not one (never throws on foreign data). */
export function parseHolderRecord(stored: string | null): HolderRecord | null {
  if (!stored) return null;
  const fields: string[] = [];
  let start = 0;
  while (fields.length < RECORD_FIELDS - 1) {
    const end = stored.indexOf('\n', start);
    if (end < 0) return null;
    fields.push(stored.slice(start, end));
    start = end + 1;
  }
  const [ttlMs, token, fencingToken, acquiredAt] = fields;
  return { ttlMs: Number(ttlMs), token, fencingToken: Number(fencingToken), acquiredAt: Number(acquiredAt), owner: stored.slice(start) };
}

/**
 * The Redis Cluster slot of a full key (client `keyPrefix` included): CRC16 (XMODEM) of the
 * hash tag, or of the whole key when it has none, modulo 16384; as `CLUSTER KEYSLOT` computes it.
 */
export function clusterSlot(key: string): number {
  let bytes = Buffer.from(key);
  const open = bytes.indexOf(0x7b); // {
  const close = open < 0 ? -1 : bytes.indexOf(0x7d, open + 1); // }
  if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

/** SCAN MATCH pattern for the holder records of every lock whose key starts with `prefix`. */
export function holderPattern(clientKeyPrefix: string, prefix: string): string {
  return `${globEscape(clientKeyPrefix)}{${globEscape(escapeTag(prefix))}*}${HOLDER_SUFFIX}`;
}

function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, '\\$&');
}

/**
 * Lua statements that mint the fencing token (`local fence`) of a grant whose lease was just
 * set and write its holder record; the arguments are Lua expressions.
 */
function stampLua(fenceKey: string, holderKey: string, token: string, ttl: string, tail: string): string {
  return `${mintFenceLua(fenceKey, ttl)}
redis.call('SET', ${holderKey}, ${ttl} .. '\\n' .. ${token} .. '\\n' .. fence_text .. ${tail})`;
}

/**
 * Mints the fencing token of a grant whose lease was just set and writes its holder record.
 * `stamp(fence_key, holder_key, token, ttl, tail)`; `stamp_grant(fence_key, holder_key,
 * offset)` reads token, ttlMs and the record's tail (`recordTail()`) from ARGV after `offset`.
 * Everything but the fence is prepared by the client: each Lua call and each concatenated
 * piece costs Redis time on every acquire (bench/RESULTS.md, section 1).
 */
const STAMP_GRANT = `
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

/**
 * KEYS: lease, fence, holder. ARGV: the grant's 3 arguments.
 * Returns the fencing token (>= 1) when granted, else `-2 - pttl` (<= -1; pttl is the holder's
 * remaining lease, -1 for none): one integer, no table. The hottest script, so it defines no
 * Lua function either: a table reply and two closures were ~3.5 of its ~13 µs (bench/NOTES.md).
 */
export const ACQUIRE = lockScript(
  `
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -2 - redis.call('PTTL', KEYS[1])
end
${stampLua('KEYS[2]', 'KEYS[3]', 'ARGV[1]', 'ARGV[2]', 'ARGV[3]')}
return fence
`,
  3,
);

/** Lua: the fencing token field (3rd) of a stored holder record, as a string, or nil. */
const FENCE_OF = `
local function fence_of(record)
  return record and string.match(record, '^[^\\n]*\\n[^\\n]*\\n([^\\n]*)\\n')
end
`;

/** What the lease holds while it is kept for the first queued waiter. */
export const RESERVED_FOR = 'queued:';

/** Message on the release channel telling waiter `token` the lease was passed to it: `granted⏎token⏎fence`. */
export const GRANTED_MESSAGE = 'granted';

/**
 * Lua: Redis' clock in ms. Writes after TIME need effects replication, the default since
 * Redis 5 (the oldest server these scripts support).
 */
const NOW_MS = `
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
 * Returns `{1, fencingToken}` when granted, `{0, pttl}` (the holder's remaining lease) when not.
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
const PASS_FRESH_MS = 1_000;

/**
 * Lua: after the lease was deleted, give the next turn to `ticket`, the waiter popped from the
 * queue (see `popTurn`). Seen within PASS_FRESH_MS: the lease is set to its token with its
 * TTL and record, and "granted" is published: it holds the lock without another round trip.
 * One not seen for longer: the lease is kept for it for `reservationMs` (it asks again when
 * woken); a waiter that died in the queue costs one reservation, then the lease is free.
 * The channel is the lease key + `:released` (with the client's keyPrefix, see `channelOf`).
 */
function giveTurnLua(reservationMs: number): string {
  return `
local function give_turn(ticket, lease_key, fence_key, holder_key, waiting_key)
  local channel = lease_key .. ':released'
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
    redis.call('PUBLISH', ${leaseKey} .. ':released', 'released')
    return ${done}
  end`;
}

/**
 * Several locks, all or none. KEYS: lease, fence, holder of each lock. ARGV: the 3 grant
 * arguments of each lock, in the same order. Every lease is checked before any is set, so
 * a miss writes nothing. Returns `{1, fence1, fence2, ...}` when all were granted, else
 * `{0, n1, pttl1, n2, pttl2, ...}` for each lock n found held (pttl -1: held without expiry).
 */
export const ACQUIRE_ALL = lockScript(
  `${STAMP_GRANT}
local held = {0}
for n = 1, #KEYS / 3 do
  local pttl = redis.call('PTTL', KEYS[3 * n - 2])
  if pttl ~= -2 then
    held[#held + 1] = n
    held[#held + 1] = pttl
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

/** Lua: does the holder record `record` belong to `token`? (The token is the record's 2nd field.) */
const RECORD_OF = `
local function record_of(record, token)
  if not record then return false end
  local first_newline = string.find(record, '\\n', 1, true)
  return first_newline ~= nil and string.sub(record, first_newline + 1, first_newline + #token + 1) == token .. '\\n'
end
`;

/**
 * The scripts that end a turn, with the backend's `queueReservationMs` written in (one fewer
 * argument on every release). KEYS of both: lease, holder, queue, waiting, fence.
 *
 * release — compare-and-delete. ARGV: token. Returns 1 released (and the next turn given,
 * see `give_turn`), 0 expired, -1 held by another token. An expired lease's record is removed
 * too when it is still ours, so it stops showing as stale.
 *
 * leaveQueue — a waiter gives up. ARGV: its token. Removes it from the queue; a turn kept for
 * it, or a lease already passed to it, goes to the next waiter (or is freed) at once.
 */
export function turnScripts(reservationMs: number): { release: LockScript; leaveQueue: LockScript } {
  // Defined only where a turn is given: a release nobody waits for creates no Lua closure.
  const giving = `${STAMP_GRANT}${NOW_MS}${giveTurnLua(reservationMs)}
  give_turn(ticket, KEYS[1], KEYS[5], KEYS[2], KEYS[4])`;
  return {
    release: lockScript(
      `
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  ${popTurn('KEYS[1]', 'KEYS[3]', '1')}
  ${giving}
  return 1
end
${RECORD_OF}
if record_of(redis.call('GET', KEYS[2]), ARGV[1]) then redis.call('DEL', KEYS[2]) end
if current then return -1 end
return 0
`,
      5,
    ),
    leaveQueue: lockScript(
      `
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] and current ~= '${RESERVED_FOR}' .. ARGV[1] then return 0 end
if current == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[1])
${popTurn('KEYS[1]', 'KEYS[3]', '0')}
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
    if record and string.sub(record, 1, #ttl + 1) ~= ttl .. '\\n' then
      local first_newline = string.find(record, '\\n', 1, true)
      if first_newline then redis.call('SET', holder, ttl .. string.sub(record, first_newline)) end
    end
    result[n] = 1
  else
    result[n] = 0
  end
end
return result
`,
);

/** Read-only snapshot. KEYS: lease, fence, holder. Returns `{pttl, fence or false, record or false}`. */
export const INSPECT = lockScript(
  `
return {redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3])}
`,
  3,
);

/**
 * An operator's reap. KEYS: lease, fence, holder. ARGV: expected fencing token ('' for any).
 * Returns `{outcome, pttl, record or false}`, outcome one of released / not-held / changed-hands.
 * A reap moves the fence on, so even with nobody re-acquiring, the reaped holder's token is old.
 */
export const FORCE_RELEASE = lockScript(
  `${FENCE_OF}
local pttl = redis.call('PTTL', KEYS[1])
local record = redis.call('GET', KEYS[3])
if pttl == -2 then
  if not record then return {'not-held', pttl, false} end
  -- A crashed holder's record: removing it is the reap the operator asked for.
  redis.call('DEL', KEYS[3])
  return {'released', pttl, record}
end
if ARGV[1] ~= '' then
  if fence_of(record) ~= ARGV[1] then return {'changed-hands', pttl, record} end
end
redis.call('DEL', KEYS[1], KEYS[3])
${mintFenceLua('KEYS[2]', '0')}
redis.call('PUBLISH', KEYS[1] .. ':released', 'released')
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
  INSPECT,
  FORCE_RELEASE,
];
