import type { LockRecord } from '../../lock-backend.interface';

/**
 * What a record file holds: one grant of one holder. No expiry is stored (kernel locks have
 * none) and staleness is judged when read, so both stay out of the file.
 */
export type StoredRecord = Omit<LockRecord, 'expiresInMs' | 'stale'> & { v: 1; grantId: string };

export interface FoundRecord {
  record: StoredRecord;
  /** The record file, or the lock file for an exclusive holder's record kept in the lock. */
  path: string;
  /** Last write or heartbeat touch (epoch ms). */
  mtimeMs: number;
}

/** The fields of a record that stay the same between grants of one key to one owner. */
type FixedFields = Pick<StoredRecord, 'v' | 'key' | 'ownerId' | 'instanceId' | 'hostname' | 'pid' | 'mode' | 'ttlMs'>;
/** Per key, those fields and their JSON (without the closing brace), built once. */
const fixedJson = new Map<string, { fields: FixedFields; json: string }>();
const MAX_FIXED_JSON = 10_000;

/**
 * A record as one line of JSON: the stored fields only (whatever else the object carries stays
 * out). Every grant writes one, so the part that does not change between grants of a key is
 * serialised once: a full `JSON.stringify` was ~1 µs of a ~18 µs file-lock cycle.
 */
export function serializeRecord(record: StoredRecord): string {
  let fixed = fixedJson.get(record.key);
  const same = fixed?.fields;
  if (
    !fixed ||
    same?.ownerId !== record.ownerId ||
    same.instanceId !== record.instanceId ||
    same.hostname !== record.hostname ||
    same.pid !== record.pid ||
    same.mode !== record.mode ||
    same.ttlMs !== record.ttlMs
  ) {
    const { v, key, ownerId, instanceId, hostname, pid, mode, ttlMs } = record;
    const current: FixedFields = { v, key, ownerId, instanceId, hostname, pid, mode, ttlMs };
    if (fixedJson.size >= MAX_FIXED_JSON) fixedJson.clear();
    fixedJson.set(key, (fixed = { fields: current, json: JSON.stringify(current).slice(0, -1) }));
  }
  // grantId is 16 hex digits (newGrantId), the other two are numbers: nothing to escape.
  return `${fixed.json},"grantId":"${record.grantId}","acquiredAt":${record.acquiredAt},"fencingToken":${record.fencingToken}}`;
}

export function parseRecord(text: string): StoredRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const r = value as Partial<StoredRecord>;
  const valid =
    r.v === 1 &&
    typeof r.key === 'string' &&
    typeof r.grantId === 'string' &&
    typeof r.ownerId === 'string' &&
    typeof r.instanceId === 'string' &&
    typeof r.hostname === 'string' &&
    Number.isInteger(r.pid) &&
    (r.mode === 'shared' || r.mode === 'exclusive') &&
    typeof r.acquiredAt === 'number' &&
    typeof r.ttlMs === 'number' &&
    typeof r.fencingToken === 'number';
  return valid ? (r as StoredRecord) : null;
}

export function toLockRecord(found: FoundRecord, expiresInMs: number | null, stale?: string | null): LockRecord {
  const { record } = found;
  return {
    key: record.key,
    ownerId: record.ownerId,
    instanceId: record.instanceId,
    hostname: record.hostname,
    pid: record.pid,
    mode: record.mode,
    acquiredAt: record.acquiredAt,
    expiresInMs,
    fencingToken: record.fencingToken,
    ttlMs: record.ttlMs,
    ...(stale ? { stale } : {}),
  };
}
