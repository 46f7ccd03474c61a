import type { LockRecord, LockRequest } from '../lock-backend.interface';

/** The holder record every backend stores for a grant, as of now. */
export function holderRecord(request: LockRequest, fencingToken: number): LockRecord {
  const record: LockRecord = {
    key: request.key,
    ownerId: request.owner.ownerId,
    instanceId: request.owner.instanceId,
    hostname: request.owner.hostname,
    pid: request.owner.pid,
    mode: request.mode,
    acquiredAt: Date.now(),
    expiresInMs: request.ttlMs,
    fencingToken,
    ttlMs: request.ttlMs,
  };
  if (request.limit !== undefined) record.limit = request.limit;
  return record;
}

/**
 * A record's clock (`acquiredAt`, a leader's `since`) as ISO text. Records are written by other
 * processes, so the number may lie outside what a Date can hold: then it reads "an unknown time".
 */
export function recordTime(epochMs: number): string {
  const date = new Date(epochMs);
  return Number.isNaN(date.getTime()) ? 'an unknown time' : date.toISOString();
}
