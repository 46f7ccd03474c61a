import { mintFenceLua } from './fencing-clock';
import { channelLua } from './redis-lock-keys';
import { FENCE_OF, recordTtlLua } from './redis-holder-record';
import {
  GRANTED_MESSAGE,
  IS_MULTI,
  LIMIT_MARKER,
  NOW_MS,
  PASS_FRESH_MS,
  RESERVED_FOR,
  SHARED_MARKER,
  STAMP_GRANT,
  giveTurnLua,
  lockScript,
  multiMarkerLua,
  type LockScript,
} from './redis-lock.scripts';

/**
 * The Lua of locks with several holders: shared mode (readers together, a writer alone) and
 * `limit: N` permits. One lock is still one hash slot; its KEYS, in this order (see
 * `redis-lock-keys.ts`): lease, fence, holder, queue, waiting, holders, expiries.
 *
 * - lease: the marker `shared:` or `limit:<N>` (the lock's kind), expiring with the latest
 *   holder's lease, so every exclusive grant (also of earlier versions) sees the lock held. A
 *   writer of a shared lock is a plain exclusive holder: its token in the lease, its record in
 *   `holder`, and the exclusive scripts serve it.
 * - expiries: token -> when its lease ends (Redis' clock, ms); holders whose lease ended are
 *   pruned by the next release, or by an attempt they would keep out (a crashed holder frees
 *   its place at its TTL).
 *   `queued:<token>` entries are turns kept for waiters not seen recently (see `reserve`).
 * - holders: token -> holder record (the format of `redis-holder-record.ts`).
 * - queue / waiting: the one FIFO queue of the lock, writers' and readers' (or permit
 *   waiters') tokens together; a reader's or permit waiter's entry starts with its kind, so the
 *   exclusive `give_turn` (of this version and earlier ones) keeps a turn for it instead of
 *   granting it a plain lease.
 * Every fencing token comes from the lock's one fence key (`fencing-clock.ts`), whatever the kind.
 */

/** Lua statements: Redis' clock in ms into `local now`. */
const NOW = `local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)`;

/**
 * Where a script finds the keys of a lock it uses, as Lua expressions: the 7 KEYS of every
 * script here but one, or the 5 of `HOLDER_TRY_ACQUIRE` (the same order, without holder and waiting).
 */
interface HolderKeys {
  lease: string;
  fence: string;
  queue: string;
  holders: string;
  expiries: string;
}

const ALL_KEYS: HolderKeys = { lease: 'KEYS[1]', fence: 'KEYS[2]', queue: 'KEYS[4]', holders: 'KEYS[6]', expiries: 'KEYS[7]' };
const TRY_KEYS: HolderKeys = { lease: 'KEYS[1]', fence: 'KEYS[2]', queue: 'KEYS[3]', holders: 'KEYS[4]', expiries: 'KEYS[5]' };

/** Lua statements: holders whose lease ended (crashed, paused, or turns kept in vain) leave with their records. */
function pruneLua(keys: HolderKeys): string {
  return `for _, ended in ipairs(redis.call('ZRANGEBYSCORE', ${keys.expiries}, '-inf', now)) do
    redis.call('ZREM', ${keys.expiries}, ended)
    redis.call('HDEL', ${keys.holders}, ended)
  end`;
}

const PRUNE = pruneLua(ALL_KEYS);

/** How long the holder and expiry sets outlive the latest lease in them. */
export const SETS_MARGIN_MS = 60_000;

/**
 * Lua statements: the holder and expiry sets live at least \`ms\` more (the end of a lease just
 * added or lengthened), so a crashed holder's entries never stay without an expiry when nobody
 * uses the key again. Set with a margin: one read on most calls, two writes per margin of use;
 * `fresh` (a Lua condition, true on a lock nobody held) skips the read: the sets are new then,
 * or leftovers of crashed holders whose expiry this renews.
 */
function keepSetsLua(holders: string, expiries: string, ms: string, fresh?: string): string {
  return `if ${fresh ? `${fresh} or ` : ''}redis.call('PTTL', ${expiries}) < ${ms} or redis.call('PTTL', ${holders}) < ${ms} then
    redis.call('PEXPIRE', ${expiries}, ${ms} + ${SETS_MARGIN_MS})
    redis.call('PEXPIRE', ${holders}, ${ms} + ${SETS_MARGIN_MS})
  end`;
}

/**
 * Lua statements: `token` joins the holders of a lock that is free or of kind `kind` for `ttl`
 * ms (`tail`: its record's tail; `pttl`: the lease key's), its fencing token in `local fence`
 * (minted on `clock`, see `NOW`). A crashed exclusive holder's record left at the holder key
 * stays there (shown as stale while the lock has no holder, as after an exclusive holder crashed).
 */
function grantLua(keys: HolderKeys): string {
  return `local lease_ms = math.max(tonumber(ttl), pttl)
  redis.call('ZADD', ${keys.expiries}, now + ttl, token)
  ${mintFenceLua(keys.fence, 'lease_ms', 'clock')}
  redis.call('HSET', ${keys.holders}, token, ttl .. '\\n' .. token .. '\\n' .. fence_text .. tail)
  ${keepSetsLua(keys.holders, keys.expiries, 'lease_ms', 'pttl == -2')}
  if pttl < lease_ms then redis.call('SET', ${keys.lease}, kind, 'PX', lease_ms) end`;
}

const GRANT = grantLua(ALL_KEYS);

/**
 * Lua, the common case of an attempt, creating no Lua function: the lease key (`current`) is
 * free or of kind `kind`, nobody queued. Granted unless `kind` is a semaphore whose permits are
 * all held: then `whenFull` runs (`now` set). Holders left in the sets whose lease ended (all
 * of them, on a free lock) are pruned by the next release, or here when they fill every permit.
 */
function takeFreePlaceLua(keys: HolderKeys, whenFull: string): string {
  return `${NOW}
  local full = false
  if current then
    local limit = tonumber(string.match(kind, '^${LIMIT_MARKER}(%d+)$'))
    if limit and redis.call('ZCARD', ${keys.expiries}) >= limit then
      ${pruneLua(keys)}
      full = redis.call('ZCARD', ${keys.expiries}) >= limit
    end
  end
  if not full then
    local pttl = current and redis.call('PTTL', ${keys.lease}) or -2
    ${grantLua(keys)}
    return fence
  end${whenFull}`;
}

/**
 * Lua statements after holders left: the lease key holds the marker `kind` until the latest
 * remaining lease ends, or nothing: then `local freed` is true.
 */
const MARK = `local last = redis.call('ZRANGE', KEYS[7], -1, -1, 'WITHSCORES')
  local freed = not last[2]
  if freed then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], kind, 'PX', math.max(1, tonumber(last[2]) - now))
  end`;

/** Lua shared by the scripts' slow paths (waiters, kept turns, other kinds): functions and `now`. */
function holderSetLua(reservationMs: number): string {
  return `${STAMP_GRANT}${NOW_MS}${FENCE_OF}${IS_MULTI}${giveTurnLua(reservationMs)}
${NOW}
local reservation_ms = ${reservationMs}
local function limit_of(kind)
  return tonumber(string.match(kind, '^${LIMIT_MARKER}(%d+)$'))
end
local function publish(message)
  redis.call('PUBLISH', ${channelLua('KEYS[1]')}, message)
end
local function prune()
  ${PRUNE}
end
local function mark(kind)
  ${MARK}
  return freed
end
local function grant(token, ttl, tail, kind)
  local pttl = redis.call('PTTL', KEYS[1])
  ${GRANT}
  return fence
end
-- A place kept for a waiter Redis has not seen lately: it counts as a holder until it asks again.
local function reserve(ticket, kind)
  redis.call('ZADD', KEYS[7], now + reservation_ms, '${RESERVED_FOR}' .. ticket)
  ${keepSetsLua('KEYS[6]', 'KEYS[7]', 'reservation_ms')}
  if redis.call('PTTL', KEYS[1]) < reservation_ms then redis.call('SET', KEYS[1], kind, 'PX', reservation_ms) end
end
-- The head of the queue gets what fits now: the leading readers together, as many permit
-- waiters as there are free permits, or, once nobody holds the lock, the lease to a writer
-- (\`give_turn\`). A waiter seen within ${PASS_FRESH_MS} ms gets its grant pushed, others a kept place
-- and a wake-up. A lock held by one holder (or kept for one waiter) passes its turn on release.
local function pass_turns()
  local current = redis.call('GET', KEYS[1])
  if current and not is_multi(current) then return end
  local count = current and redis.call('ZCARD', KEYS[7]) or 0
  local woken = false
  while true do
    local ticket = redis.call('LINDEX', KEYS[4], 0)
    if not ticket then break end
    local entry = redis.call('HGET', KEYS[5], ticket)
    local kind, seen_at, ttl, tail
    if entry then kind, seen_at, ttl, tail = string.match(entry, '^(%l+:%d*)\\n(%d+)\\n(%d+)(\\n.*)$') end
    if not kind then
      if count > 0 then break end
      redis.call('LPOP', KEYS[4])
      if current then redis.call('DEL', KEYS[1]) end
      give_turn(ticket, KEYS[1], KEYS[2], KEYS[3], KEYS[5])
      return
    end
    local limit = limit_of(kind)
    if count > 0 and (kind ~= current or (limit and count >= limit)) then break end
    redis.call('LPOP', KEYS[4])
    redis.call('HDEL', KEYS[5], ticket)
    -- Nobody holds: a marker of another kind left behind goes, so this grant writes its own.
    if count == 0 and current and kind ~= current then redis.call('DEL', KEYS[1]) end
    if now - tonumber(seen_at) <= ${PASS_FRESH_MS} then
      local fence = grant(ticket, ttl, tail, kind)
      publish('${GRANTED_MESSAGE}\\n' .. ticket .. '\\n' .. string.format('%.0f', fence))
    else
      reserve(ticket, kind)
      woken = true
    end
    current = kind
    count = count + 1
  end
  if woken then publish('released') end
end
-- After holders left (and \`prune()\`): the lease key follows the rest, the queue moves, and a lock
-- left free says so.
local function after_leaving(kind)
  local freed = mark(kind)
  if redis.call('LLEN', KEYS[4]) > 0 then
    pass_turns()
    freed = redis.call('EXISTS', KEYS[1]) == 0
  end
  if freed then publish('released') end
end
`;
}

/** Lua: the fencing token in holder `token`'s record, as a number. */
const FENCE_OF_HOLDER = `
local function fence_of_holder(token)
  return tonumber(fence_of(redis.call('HGET', KEYS[6], token))) or 0
end
`;

/**
 * The earliest end among the holders (what a miss waits for at most), else the lease's PTTL:
 * a writer's, or a turn kept for a waiter.
 */
const RETRY_AFTER = `
local function retry_after()
  if is_multi(redis.call('GET', KEYS[1])) then
    local first = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
    if first[2] then return math.max(0, tonumber(first[2]) - now) end
  end
  return redis.call('PTTL', KEYS[1])
end
`;

/**
 * acquire: one attempt for a reader (`kind` = `shared:`) or a permit (`limit:<N>`).
 * KEYS: all 7. ARGV: token, ttl, record tail (`recordTail()`), kind, and the queue's lifetime
 * in ms (0: do not queue). Replies as ACQUIRE: the fencing token (>= 1) when granted, else
 * `-2 - retryAfterMs` (<= -1), or `{N}` when the lock is of another kind (`N` = its limit, 1
 * for a plain lock or readers): a caller error.
 *
 * Taken when the lock is free or of this kind, nobody is queued (first come, first served:
 * once a writer waits, new readers queue behind it) and a permit is free. A waiter (queue
 * lifetime > 0) is also granted when its turn was kept (by the release of a holder of any
 * kind) or already passed to it (its lease then refreshed: it measures it from this call), or
 * when the queue moves while it asks (holders that crashed left room); otherwise it keeps or
 * takes its place at the end of the queue, its entry saying when Redis saw it last.
 */
export function holderAcquireScript(reservationMs: number): LockScript {
  return lockScript(
    `
local token, ttl, tail, kind, queue_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local current = redis.call('GET', KEYS[1])
-- The common case first: a free lock, nobody queued (a one-shot attempt on a lock of this kind
-- comes here only when waiters are queued: HOLDER_TRY_ACQUIRE serves the rest).
if (not current or (current == kind and queue_ms == 0)) and redis.call('LLEN', KEYS[4]) == 0 then
  ${takeFreePlaceLua(ALL_KEYS, '')}
end
${holderSetLua(reservationMs)}${FENCE_OF_HOLDER}${RETRY_AFTER}
local kept = false
if current == '${RESERVED_FOR}' .. token then
  -- A turn an exclusive release kept for us (it grants plain leases only).
  redis.call('DEL', KEYS[1])
  current = false
  kept = true
end
if is_multi(current) and current ~= kind then return {limit_of(current) or 1} end
if current and not is_multi(current) then
  -- A writer, or a turn kept for a waiter: contention, except for a permit on a plain lock.
  if limit_of(kind) and string.sub(current, 1, ${RESERVED_FOR.length}) ~= '${RESERVED_FOR}' then return {1} end
else
  prune()
  -- Only a waiter's token (the same on every attempt) can have been given a place already.
  if current and queue_ms > 0 then
    if redis.call('ZSCORE', KEYS[7], token) then
      redis.call('ZADD', KEYS[7], now + ttl, token)
      ${keepSetsLua('KEYS[6]', 'KEYS[7]', 'tonumber(ttl)')}
      if redis.call('PTTL', KEYS[1]) < tonumber(ttl) then redis.call('PEXPIRE', KEYS[1], ttl) end
      return fence_of_holder(token)
    end
    if redis.call('ZREM', KEYS[7], '${RESERVED_FOR}' .. token) == 1 then kept = true end
  end
end
local function enqueue()
  if redis.pcall('LPOS', KEYS[4], token) == false then redis.call('RPUSH', KEYS[4], token) end
  redis.call('HSET', KEYS[5], token, kind .. '\\n' .. now .. '\\n' .. ttl .. tail)
  if redis.call('PTTL', KEYS[4]) < queue_ms then
    redis.call('PEXPIRE', KEYS[4], queue_ms)
    redis.call('PEXPIRE', KEYS[5], queue_ms)
  end
end
if not current or current == kind then
  if kept then
    redis.call('LREM', KEYS[4], 0, token)
    redis.call('HDEL', KEYS[5], token)
    local fence = grant(token, ttl, tail, kind)
    pass_turns()
    return fence
  end
  if redis.call('LLEN', KEYS[4]) == 0 then
    local limit = limit_of(kind)
    if not limit or redis.call('ZCARD', KEYS[7]) < limit then return grant(token, ttl, tail, kind) end
  elseif queue_ms > 0 then
    enqueue()
    pass_turns()
    if redis.call('ZSCORE', KEYS[7], token) then return fence_of_holder(token) end
    return -2 - retry_after()
  else
    pass_turns()
    -- The queue moved: a one-shot attempt gets what is left once nobody waits any more.
    if redis.call('LLEN', KEYS[4]) == 0 then
      current = redis.call('GET', KEYS[1])
      local limit = limit_of(kind)
      if not current or (current == kind and (not limit or redis.call('ZCARD', KEYS[7]) < limit)) then return grant(token, ttl, tail, kind) end
    end
  end
end
if queue_ms > 0 then enqueue() end
return -2 - retry_after()
`,
    7,
  );
}

/**
 * tryAcquire: a one-shot attempt (no queueing) for a reader or a permit, with only the 5 keys it
 * needs. KEYS: lease, fence, queue, holders, expiries. ARGV: token, ttl, record tail, kind.
 * Replies as the acquire script; `false` (nil) when waiters are queued on a lock free or of this
 * kind: then the acquire script (with all 7 keys) answers, moving the queue as it does.
 */
export const HOLDER_TRY_ACQUIRE = lockScript(
  `
local token, ttl, tail, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('GET', KEYS[1])
if not current or current == kind then
  if redis.call('LLEN', KEYS[3]) > 0 then return false end
  ${takeFreePlaceLua(
    TRY_KEYS,
    `
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  return -2 - math.max(0, tonumber(first[2]) - now)`,
  )}
end
-- Held by holders of another kind (a caller error), a writer, or a turn kept for a waiter.
if ${multiMarkerLua('current')} then return {tonumber(string.match(current, '^${LIMIT_MARKER}(%d+)$')) or 1} end
if string.match(kind, '^${LIMIT_MARKER}') and string.sub(current, 1, ${RESERVED_FOR.length}) ~= '${RESERVED_FOR}' then return {1} end
return -2 - redis.call('PTTL', KEYS[1])
`,
  5,
);

/**
 * The scripts that end a holder's or waiter's turn, with the backend's `queueReservationMs`
 * written in. KEYS of all: the 7 of a lock.
 *
 * release — ARGV: token. Returns 1 released, 0 expired (its lease had ended), -1 the lock is
 * now another's (a plain holder). The queue moves (see `pass_turns`). With nobody queued, the
 * lease key's marker is only moved by the release of the latest lease (a SET saved on the others).
 *
 * leaveQueue — a reader or permit waiter gives up (after the exclusive leaveQueue took it out
 * of the queue and answered 2). ARGV: its token. A permit passed or a place kept for it goes
 * to the next waiters at once; so does the turn of waiters a writer that gave up kept out.
 *
 * forceRelease — an operator's reap. ARGV: a holder's fencing token, or '' for every holder.
 * Returns `{'plain'}` when the lock has one holder (the exclusive FORCE_RELEASE serves it),
 * else `{outcome, remaining ms, record or false, kind}`: released (the evicted record; the
 * oldest when all), changed-hands (no holder has that token; the oldest holder's record).
 */
export function holderScripts(reservationMs: number): { acquire: LockScript; release: LockScript; leaveQueue: LockScript; forceRelease: LockScript } {
  const holderSet = holderSetLua(reservationMs);
  return {
    acquire: holderAcquireScript(reservationMs),
    release: lockScript(
      `
local token = ARGV[1]
local kind = redis.call('GET', KEYS[1])
-- The common case first, creating no Lua function: nobody queued.
if kind and ${multiMarkerLua('kind')} and redis.call('LLEN', KEYS[4]) == 0 then
  ${NOW}
  -- The marker ends with the latest lease: only the release of that one (or of none left) moves it.
  local last = redis.call('ZRANGE', KEYS[7], -2, -1, 'WITHSCORES')
  if last[1] == token and not last[3] then
    -- The only holder: the lock is free.
    redis.call('DEL', KEYS[1], KEYS[6], KEYS[7])
    redis.call('PUBLISH', ${channelLua('KEYS[1]')}, 'released')
    return tonumber(last[2]) > now and 1 or 0
  end
  ${PRUNE}
  local released = redis.call('ZREM', KEYS[7], token)
  redis.call('HDEL', KEYS[6], token)
  if not last[1] or last[#last - 1] == token then
    if last[3] and tonumber(last[2]) > now then
      redis.call('SET', KEYS[1], kind, 'PX', tonumber(last[2]) - now)
    else
      redis.call('DEL', KEYS[1])
      redis.call('PUBLISH', ${channelLua('KEYS[1]')}, 'released')
    end
  end
  return released
end
${holderSet}
prune()
local released = redis.call('ZREM', KEYS[7], token)
redis.call('HDEL', KEYS[6], token)
local current = redis.call('GET', KEYS[1])
if current and not is_multi(current) then return -1 end
if not current then
  pass_turns()
  return 0
end
after_leaving(current)
return released
`,
      7,
    ),
    leaveQueue: lockScript(
      `${holderSet}
local token = ARGV[1]
redis.call('LREM', KEYS[4], 0, token)
redis.call('HDEL', KEYS[5], token)
local current = redis.call('GET', KEYS[1])
if not is_multi(current) then return 0 end
redis.call('ZREM', KEYS[7], token, '${RESERVED_FOR}' .. token)
redis.call('HDEL', KEYS[6], token)
prune()
after_leaving(current)
return 0
`,
      7,
    ),
    forceRelease: lockScript(
      `${holderSet}
local current = redis.call('GET', KEYS[1])
if not is_multi(current) then return {'plain'} end
local ends = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
-- The answer's record: the evicted one (the oldest grant when several); none evicted: the oldest holder.
local answer, answer_ends, answer_fence, answer_evicted
local evicted = 0
for n = 1, #ends, 2 do
  local record = redis.call('HGET', KEYS[6], ends[n])
  local fence = fence_of(record)
  local evict = ARGV[1] == '' or fence == ARGV[1]
  if evict then
    redis.call('ZREM', KEYS[7], ends[n])
    redis.call('HDEL', KEYS[6], ends[n])
    evicted = evicted + 1
  end
  if record and (evict or not answer_evicted) and (evict ~= answer_evicted or (tonumber(fence) or 0) < answer_fence) then
    answer, answer_ends, answer_fence, answer_evicted = record, tonumber(ends[n + 1]), tonumber(fence) or 0, evict
  end
end
local remaining = answer_ends and answer_ends - now or -2
if evicted == 0 then return {'changed-hands', remaining, answer or false, current} end
local lease_ms = math.max(0, redis.call('PTTL', KEYS[1]))
${mintFenceLua('KEYS[2]', 'lease_ms')}
prune()
after_leaving(current)
return {'released', remaining, answer or false, current}
`,
      7,
    ),
  };
}

/**
 * Compare-and-extend for many leases of locks with several holders. KEYS: lease1, holders1,
 * expiries1, lease2, ... ARGV: token1, ttl1, token2, ttl2, ... Returns 1/0 per lease, in order.
 * The lease key's marker is lengthened when this lease now ends after it, and follows the latest
 * lease left when this one was shortened (`extend(ttlMs)`); the record's ttlMs is
 * rewritten only when the lease length changed.
 */
export const HOLDER_EXTEND = lockScript(
  `${NOW_MS}${IS_MULTI}
local now = now_ms()
local result = {}
for n = 1, #KEYS / 3 do
  local lease, holders, expiries, token, ttl = KEYS[3 * n - 2], KEYS[3 * n - 1], KEYS[3 * n], ARGV[2 * n - 1], ARGV[2 * n]
  local ends = tonumber(redis.call('ZSCORE', expiries, token))
  if ends and ends > now and is_multi(redis.call('GET', lease)) then
    redis.call('ZADD', expiries, now + ttl, token)
    ${keepSetsLua('holders', 'expiries', 'tonumber(ttl)')}
    local pttl = redis.call('PTTL', lease)
    if pttl < tonumber(ttl) then
      redis.call('PEXPIRE', lease, ttl)
    elseif now + ttl < ends and pttl > tonumber(ttl) then
      -- This lease was shortened: the marker ends with the latest lease left.
      local last = redis.call('ZRANGE', expiries, -1, -1, 'WITHSCORES')
      redis.call('PEXPIRE', lease, math.max(1, tonumber(last[2]) - now))
    end
    local record = redis.call('HGET', holders, token)
    ${recordTtlLua((value) => `redis.call('HSET', holders, token, ${value})`)}
    result[n] = 1
  else
    result[n] = 0
  end
end
return result
`,
);

/**
 * Read-only snapshot of a lock with one holder or several. KEYS: the 7 of a lock. Returns
 * `{pttl, fence or false, record or false, lease, {remaining1, record1, remaining2, ...}}`:
 * the lease key's PTTL, the exclusive holder's record, the lease key's content, and each
 * holder of a shared or permit lock (when the lease holds their marker) with its remaining
 * lease (<= 0: ended, not pruned yet), oldest grant first.
 */
export const INSPECT = lockScript(
  `${NOW_MS}${IS_MULTI}
local lease = redis.call('GET', KEYS[1])
local holders = {}
if is_multi(lease) then
  local now = now_ms()
  local ends = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
  for n = 1, #ends, 2 do
    local record = redis.call('HGET', KEYS[6], ends[n])
    if record then
      holders[#holders + 1] = tonumber(ends[n + 1]) - now
      holders[#holders + 1] = record
    end
  end
end
return {redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3]), lease, holders}
`,
  7,
);

/** Lease-key content for a request of kind `limit` (`undefined`: shared). */
export function holderKind(limit: number | undefined): string {
  return limit === undefined ? SHARED_MARKER : LIMIT_MARKER + String(limit);
}
