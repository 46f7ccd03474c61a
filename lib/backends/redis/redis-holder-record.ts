import type { LockMode, LockOwner, LockRecord } from '../../lock-backend.interface';
import { mintFenceLua } from './fencing-clock';

/**
 * The holder record of the Redis backend, as stored at `{E}:holder` (see `redis-lock-keys.ts`),
 * and the Lua fragments that write and read it.
 *
 * The record is one string rather than a hash because every Lua `redis.call` and every
 * script argument costs Redis time on the hot path: an 11-field HSET made the acquire script
 * cost ~10 µs against ~7 µs now (bench/RESULTS.md, section 1).
 */

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

/**
 * Records are also the values of `{E}:holders` (one per holder of a shared or permit lock),
 * where the same parsing and Lua fragments apply.
 */

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
 * Lua statements that mint the fencing token (`local fence`) of a grant whose lease was just
 * set and write its holder record; the arguments are Lua expressions.
 */
export function stampLua(fenceKey: string, holderKey: string, token: string, ttl: string, tail: string): string {
  return `${mintFenceLua(fenceKey, ttl)}
redis.call('SET', ${holderKey}, ${ttl} .. '\\n' .. ${token} .. '\\n' .. fence_text .. ${tail})`;
}

/**
 * Lua statements (inside a heartbeat's loop, 4 spaces deep): the record in `record`, just read,
 * gets `ttl` as its first field unless it has it already; `write(value)` is the Lua that stores it.
 */
export function recordTtlLua(write: (value: string) => string): string {
  return `if record and string.sub(record, 1, #ttl + 1) ~= ttl .. '\\n' then
      local first_newline = string.find(record, '\\n', 1, true)
      if first_newline then ${write('ttl .. string.sub(record, first_newline)')} end
    end`;
}

/** Lua: the fencing token field (3rd) of a stored holder record, as a string, or nil. */
export const FENCE_OF = `
local function fence_of(record)
  return record and string.match(record, '^[^\\n]*\\n[^\\n]*\\n([^\\n]*)\\n')
end
`;

/** Lua: does the holder record `record` belong to `token`? (The token is the record's 2nd field.) */
export const RECORD_OF = `
local function record_of(record, token)
  if not record then return false end
  local first_newline = string.find(record, '\\n', 1, true)
  return first_newline ~= nil and string.sub(record, first_newline + 1, first_newline + #token + 1) == token .. '\\n'
end
`;

const STALE_REASON = 'lease expired without a release (holder crashed, paused or lost it)';

/**
 * A `LockRecord` from a stored record and its lease's PTTL (-2: gone, the holder is stale);
 * `null` when neither is there. `fence` stands in for a missing record's fencing token.
 */
export function toLockRecord(
  key: string,
  pttl: number,
  fence: string | null,
  stored: string | null,
  mode: LockMode = 'exclusive',
  limit?: number,
): LockRecord | null {
  const leaseExists = pttl !== -2;
  const holder = parseHolderRecord(stored);
  if (!leaseExists && !holder) return null;
  const owner = holder ? parseOwner(holder.owner) : {};
  const record: LockRecord = {
    key,
    // A lease without a record was written by something else (or its record was evicted).
    ownerId: typeof owner.ownerId === 'string' ? owner.ownerId : 'unknown',
    instanceId: typeof owner.instanceId === 'string' ? owner.instanceId : 'unknown',
    hostname: typeof owner.hostname === 'string' ? owner.hostname : 'unknown',
    pid: typeof owner.pid === 'number' ? owner.pid : 0,
    mode,
    acquiredAt: finiteOr(holder?.acquiredAt, 0),
    expiresInMs: pttl >= 0 ? pttl : pttl === -2 ? 0 : null,
    fencingToken: finiteOr(holder?.fencingToken, Number(fence ?? 0) || 0),
    ttlMs: finiteOr(holder?.ttlMs, 0),
  };
  if (limit !== undefined) record.limit = limit;
  if (!leaseExists) record.stale = STALE_REASON;
  return record;
}

function parseOwner(json: string): Partial<Record<keyof LockOwner, unknown>> {
  try {
    const owner: unknown = JSON.parse(json);
    return typeof owner === 'object' && owner !== null ? (owner as Partial<Record<keyof LockOwner, unknown>>) : {};
  } catch {
    return {};
  }
}

function finiteOr(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) ? value : fallback;
}
