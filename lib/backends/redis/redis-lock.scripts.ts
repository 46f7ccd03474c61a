/**
 * Key layout and Lua scripts of the Redis backend.
 *
 * One lock `K` (already carrying the module's keyPrefix) lives in these keys, all sharing
 * the hash tag `{E}` (E = K with `%` and `}` escaped) so every script stays in one slot of
 * a Redis Cluster:
 *   `{E}`          the lease: the holder's token, with a PX expiry
 *   `{E}:fence`    the fencing counter: INCR on every grant, never expires (it must outlive
 *                  leases, or tokens would restart at 1; see README "maxmemory-policy")
 *   `{E}:meta`     holder metadata hash; no expiry, deleted on release, so a record whose
 *                  lease is gone is a holder that died or lost its lease (shown as stale)
 * Release messages go to the channel `{E}:released`.
 */

export interface LockKeys {
  lease: string;
  fence: string;
  meta: string;
  channel: string;
}

/** Suffix every meta key ends with; `list()` scans for it. */
export const META_SUFFIX = ':meta';

/**
 * `}` would end the hash tag early (a key starting with `}` would even give an empty tag and
 * scatter the lock over several slots), so it is escaped; `%` is escaped first to keep the
 * mapping one-to-one.
 */
export function escapeTag(key: string): string {
  return key.replace(/%/g, '%25').replace(/\}/g, '%7D');
}

export function lockKeys(key: string): LockKeys {
  const base = `{${escapeTag(key)}}`;
  return { lease: base, fence: `${base}:fence`, meta: `${base}${META_SUFFIX}`, channel: `${base}:released` };
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

/** SCAN MATCH pattern for the meta keys of every lock whose key starts with `prefix`. */
export function metaPattern(clientKeyPrefix: string, prefix: string): string {
  return `${globEscape(clientKeyPrefix)}{${globEscape(escapeTag(prefix))}*}${META_SUFFIX}`;
}

function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, '\\$&');
}

/**
 * Writes the fencing token and the holder metadata of a grant whose lease was just set.
 * `stamp_grant(fence, meta, offset)` reads its 8 arguments from ARGV after `offset`:
 * token, ttlMs, key, ownerId, instanceId, hostname, pid, mode.
 * `acquiredAt` is Redis' clock, so records from many hosts compare on one clock.
 */
const STAMP_GRANT = `
-- Redis < 5 replicates scripts verbatim and would refuse writes after TIME.
if redis.replicate_commands then redis.replicate_commands() end
local function stamp_grant(fence_key, meta_key, offset)
  local function arg(n) return ARGV[offset + n] end
  local fence = redis.call('INCR', fence_key)
  local now = redis.call('TIME')
  local acquired_at = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
  redis.call('DEL', meta_key)
  redis.call('HSET', meta_key, 'key', arg(3), 'token', arg(1), 'ownerId', arg(4), 'instanceId', arg(5),
    'hostname', arg(6), 'pid', arg(7), 'mode', arg(8), 'acquiredAt', acquired_at, 'ttlMs', arg(2),
    'fencingToken', fence)
  return fence
end
`;

/** How many ARGV entries one grant takes (see `stamp_grant`). */
export const GRANT_ARGS = 8;

export interface LockScript {
  /** Method name given to ioredis `defineCommand` (EVALSHA with NOSCRIPT fallback). */
  name: string;
  /** Fixed key count, or `undefined` when the caller passes it (batched extend). */
  numberOfKeys?: number;
  lua: string;
}

/**
 * KEYS: lease, fence, meta. ARGV: the grant's 8 arguments.
 * Returns `{1, fencingToken}` when granted, `{0, pttl}` (the holder's remaining lease) when not.
 */
export const ACQUIRE: LockScript = {
  name: 'nestjsLockAcquire',
  numberOfKeys: 3,
  lua: `${STAMP_GRANT}
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
return {1, stamp_grant(KEYS[2], KEYS[3], 0)}
`,
};

/**
 * Several locks, all or none. KEYS: lease, fence, meta of each lock. ARGV: the 8 grant
 * arguments of each lock, in the same order. Every lease is checked before any is set, so
 * a miss writes nothing. Returns `{1, fence1, fence2, ...}` when all were granted, else
 * `{0, n1, pttl1, n2, pttl2, ...}` for each lock n found held (pttl -1: held without expiry).
 */
export const ACQUIRE_ALL: LockScript = {
  name: 'nestjsLockAcquireAll',
  lua: `${STAMP_GRANT}
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
};

/**
 * Passes a held lease to a new grant in one step: checks the old token (ARGV[9]), sets the
 * new token with the new TTL, mints a fencing token and rewrites the metadata.
 * Returns the fencing token, or `false` (nil) when the old token no longer holds the lease.
 */
export const HAND_OVER: LockScript = {
  name: 'nestjsLockHandOver',
  numberOfKeys: 3,
  lua: `${STAMP_GRANT}
if redis.call('GET', KEYS[1]) ~= ARGV[9] then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return stamp_grant(KEYS[2], KEYS[3], 0)
`,
};

/**
 * Compare-and-delete. KEYS: lease, meta. ARGV: token, channel.
 * Returns 1 released (and publishes), 0 expired, -1 held by another token. An expired
 * lease's metadata is removed too when it is still ours, so it stops showing as stale.
 */
export const RELEASE: LockScript = {
  name: 'nestjsLockRelease',
  numberOfKeys: 2,
  lua: `
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
if redis.call('HGET', KEYS[2], 'token') == ARGV[1] then redis.call('DEL', KEYS[2]) end
if current then return -1 end
return 0
`,
};

/**
 * Compare-and-pexpire for many leases. KEYS: lease1, meta1, lease2, meta2, ...
 * ARGV: token1, ttl1, token2, ttl2, ... Returns 1/0 per lease, in order.
 */
export const EXTEND: LockScript = {
  name: 'nestjsLockExtend',
  lua: `
local result = {}
for n = 1, #KEYS / 2 do
  local lease, meta, token, ttl = KEYS[2 * n - 1], KEYS[2 * n], ARGV[2 * n - 1], ARGV[2 * n]
  if redis.call('GET', lease) == token then
    redis.call('PEXPIRE', lease, ttl)
    local old = redis.call('HGET', meta, 'ttlMs')
    if old and old ~= ttl then redis.call('HSET', meta, 'ttlMs', ttl) end
    result[n] = 1
  else
    result[n] = 0
  end
end
return result
`,
};

/** Read-only snapshot. KEYS: lease, fence, meta. Returns `{pttl, fence or false, meta as flat array}`. */
export const INSPECT: LockScript = {
  name: 'nestjsLockInspect',
  numberOfKeys: 3,
  lua: `
return {redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[3])}
`,
};

/**
 * An operator's reap. KEYS: lease, fence, meta. ARGV: expected fencing token ('' for any), channel.
 * Returns `{outcome, pttl, meta as flat array}`, outcome one of released / not-held / changed-hands.
 * A reap moves the fence on, so even with nobody re-acquiring, the reaped holder's token is old.
 */
export const FORCE_RELEASE: LockScript = {
  name: 'nestjsLockForceRelease',
  numberOfKeys: 3,
  lua: `
local pttl = redis.call('PTTL', KEYS[1])
local meta = redis.call('HGETALL', KEYS[3])
if pttl == -2 then
  if #meta == 0 then return {'not-held', pttl, meta} end
  -- A crashed holder's record: removing it is the reap the operator asked for.
  redis.call('DEL', KEYS[3])
  return {'released', pttl, meta}
end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[3], 'fencingToken') ~= ARGV[1] then
  return {'changed-hands', pttl, meta}
end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], 'released')
return {'released', pttl, meta}
`,
};

export const LOCK_SCRIPTS: readonly LockScript[] = [ACQUIRE, ACQUIRE_ALL, HAND_OVER, RELEASE, EXTEND, INSPECT, FORCE_RELEASE];
