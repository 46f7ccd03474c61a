/**
 * Key layout of the Redis backend.
 *
 * One lock `K` (already carrying the module's keyPrefix) lives in these keys, all sharing
 * the hash tag `{E}` (E = K with `%` and `}` escaped) so every script stays in one slot of
 * a Redis Cluster:
 *   `{E}`          the lease: the holder's token, with a PX expiry
 *   `{E}:fence`    the last fencing token; expires a margin after the last grant's lease,
 *                  when Redis' clock alone is above it (see `fencing-clock.ts`)
 *   `{E}:holder`   the holder record, one packed string (see `redis-holder-record.ts`); no
 *                  expiry, deleted on release, so a record whose lease is gone is a holder that
 *                  died or lost its lease (shown as stale)
 *   `{E}:queue`    tokens of waiters, oldest first (only while some wait); on release the
 *                  lease passes to the first one (see `give_turn` in `redis-lock.scripts.ts`)
 *   `{E}:waiting`  hash: waiter token -> when Redis last saw it, and its grant arguments
 *   `{E}:holders`  hash: token -> holder record, one per holder of a lock with several
 *                  (shared mode, or `limit` permits; see `holder-set.scripts.ts`)
 *   `{E}:expiries` sorted set: token -> when its lease ends (Redis' clock, ms), same holders
 * While a lock has several holders its lease key holds a marker (`shared:` or `limit:<N>`)
 * instead of a token, expiring with the latest of their leases: to an exclusive grant (of this
 * version or an earlier one) the lock is then simply held.
 * Every script of one lock takes its KEYS in that order (lease, fence, holder, queue, waiting,
 * holders, expiries), or the first of them it needs (a reader's or permit's one-shot attempt:
 * those it needs, in that order).
 *
 * Release messages go to the channel `{E}:released` (`RELEASED_SUFFIX`). Channels are not
 * keys: the scripts name it after KEYS[1] (`channelLua`), so it carries the client's
 * keyPrefix, and the subscriber adds that prefix to `LockKeys.channel`.
 */

export interface LockKeys {
  lease: string;
  fence: string;
  holder: string;
  queue: string;
  waiting: string;
  holders: string;
  expiries: string;
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
export const HOLDERS_SUFFIX = ':holders';
export const EXPIRIES_SUFFIX = ':expiries';

/** The lease key `{E}`; the lock's other keys are it plus a suffix. */
export function leaseKeyOf(key: string): string {
  return `{${escapeTag(key)}}`;
}

/** Suffix of the release channel after the lease key: named here only (see `channelLua`). */
export const RELEASED_SUFFIX = ':released';

export function lockKeys(key: string): LockKeys {
  const lease = leaseKeyOf(key);
  return {
    lease,
    fence: lease + FENCE_SUFFIX,
    holder: lease + HOLDER_SUFFIX,
    queue: lease + QUEUE_SUFFIX,
    waiting: lease + WAITING_SUFFIX,
    holders: lease + HOLDERS_SUFFIX,
    expiries: lease + EXPIRIES_SUFFIX,
    channel: lease + RELEASED_SUFFIX,
  };
}

/** Lua: the release channel of the lock whose lease key is the Lua expression `leaseKey`. */
export function channelLua(leaseKey: string): string {
  return `${leaseKey} .. '${RELEASED_SUFFIX}'`;
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

/**
 * SCAN MATCH pattern for the holder records of every lock whose key starts with `prefix`: the
 * `{E}:holder` of a lock with one holder and the `{E}:holders` of one with several.
 */
export function holderPattern(clientKeyPrefix: string, prefix: string): string {
  return `${globEscape(clientKeyPrefix)}{${globEscape(escapeTag(prefix))}*}${HOLDER_SUFFIX}*`;
}

function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, '\\$&');
}
