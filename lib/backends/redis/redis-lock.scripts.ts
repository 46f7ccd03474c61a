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

/** SCAN MATCH pattern for the meta keys of every lock whose key starts with `prefix`. */
export function metaPattern(clientKeyPrefix: string, prefix: string): string {
  return `${globEscape(clientKeyPrefix)}{${globEscape(escapeTag(prefix))}*}${META_SUFFIX}`;
}

function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, '\\$&');
}

/**
 * Writes the fencing token and the holder metadata of a grant whose lease was just set.
 * KEYS: lease, fence, meta. ARGV: token, ttlMs, key, ownerId, instanceId, hostname, pid, mode.
 * `acquiredAt` is Redis' clock, so records from many hosts compare on one clock.
 */
const STAMP_GRANT = `
-- Redis < 5 replicates scripts verbatim and would refuse writes after TIME.
if redis.replicate_commands then redis.replicate_commands() end
local function stamp_grant()
  local fence = redis.call('INCR', KEYS[2])
  local now = redis.call('TIME')
  local acquired_at = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'key', ARGV[3], 'token', ARGV[1], 'ownerId', ARGV[4], 'instanceId', ARGV[5],
    'hostname', ARGV[6], 'pid', ARGV[7], 'mode', ARGV[8], 'acquiredAt', acquired_at, 'ttlMs', ARGV[2],
    'fencingToken', fence)
  return fence
end
`;

export interface LockScript {
  /** Method name given to ioredis `defineCommand` (EVALSHA with NOSCRIPT fallback). */
  name: string;
  /** Fixed key count, or `undefined` when the caller passes it (batched extend). */
  numberOfKeys?: number;
  lua: string;
}

/** Returns `{1, fencingToken}` when granted, `{0, pttl}` (the holder's remaining lease) when not. */
export const ACQUIRE: LockScript = {
  name: 'nestjsLockAcquire',
  numberOfKeys: 3,
  lua: `${STAMP_GRANT}
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
return {1, stamp_grant()}
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
return stamp_grant()
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
  redis.call('DEL', KEYS[3])
  return {'not-held', pttl, meta}
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

export const LOCK_SCRIPTS: readonly LockScript[] = [ACQUIRE, HAND_OVER, RELEASE, EXTEND, INSPECT, FORCE_RELEASE];
