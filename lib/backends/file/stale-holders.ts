import { Logger } from '@nestjs/common';
import { basename } from 'node:path';
import type { LockRecord, LockRequest } from '../../lock-backend.interface';
import { errorMessage } from '../../lock.errors';
import { holderRecord, recordTime } from '../holder-record';
import { removeQuietly } from './atomic-files';
import type { FileBackendOptions, FileStaleRecord } from './file-backend-options.interface';
import { toLockRecord, type FoundRecord, type StoredRecord } from './holder-record-format';
import { readAllRecords, readRecords, removeDeadTempFiles } from './holder-records';
import { isLockFile, keyFiles, newGrantId, type KeyFiles } from './lock-file-names';
import type { ClaimAttempt, LockMechanism } from './lock-mechanism';
import { deadHolderReason, HOSTNAME } from './pid-liveness';
import { processLockTable as table } from './process-lock-table';

/** Stale records already reported by `inspect`/`list`, remembered so each is reported once. */
const MAX_REMEMBERED_STALE = 10_000;

export type Granted = Extract<ClaimAttempt, { claim: object }>;

/**
 * Stale detection of the file backend: which records are holders that are gone (a dead pid,
 * or a record the lock proves a leftover), reported once each (log and `file.onStale`), and
 * cleared: on acquire, by an operator's reap, and by the start-up sweep.
 */
export class StaleHolders {
  private readonly logger = new Logger('FileLockBackend');
  private readonly reportedStale = new Set<string>();

  constructor(private readonly onStale: FileBackendOptions['onStale']) {}

  /**
   * Start-up: records and temp files of holders that died on this host. A record kept in a
   * lock file can only be removed under the lock, so that lock is taken (and given back) once.
   */
  async sweep(dir: string, mechanism: LockMechanism): Promise<void> {
    for (const entry of await readAllRecords(dir, (anchorPath) => mechanism.lockRecord(anchorPath))) {
      const reason = deadHolderReason(entry.record);
      if (!reason) continue;
      if (!isLockFile(basename(entry.path))) {
        this.report(entry, reason, 'init');
        await removeQuietly(entry.path);
        continue;
      }
      const files = keyFiles(dir, entry.record.key);
      // A record that does not name this lock file's key is not one we wrote: left alone.
      if (entry.path !== files.anchorPath) continue;
      await table.serialize(files.anchorPath, async () => {
        if (!table.get(files.anchorPath)) await this.reap(mechanism, files, false, 'init');
      });
    }
    await removeDeadTempFiles(dir);
  }

  /**
   * Take a lock nobody of this process holds, only to clear what dead holders left (operator
   * reap, start-up sweep), and give it back. `force` takes a degraded claim even from a live holder.
   */
  async reap(
    mechanism: LockMechanism,
    files: KeyFiles,
    force: boolean,
    detectedBy: FileStaleRecord['detectedBy'],
  ): Promise<Exclude<ClaimAttempt, Granted> | (Granted & { leftovers: LockRecord[] })> {
    const reaper = newRecord({ key: files.key, token: '', ttlMs: 60_000, mode: 'exclusive', owner: this.reaperOwner() });
    const attempt = await mechanism.claim(files, 'exclusive', reaper, force);
    if (!attempt.claim) return attempt;
    try {
      return { ...attempt, leftovers: await this.clearLeftovers(mechanism, files, 'exclusive', attempt, detectedBy) };
    } finally {
      await attempt.claim.release();
      table.released(files.anchorPath);
    }
  }

  /**
   * Records found right after taking the lock: the one a dead exclusive holder left in the lock
   * and, when the lock says some may exist, record files. Holding the lock exclusively (or
   * holding a degraded claim, which is always exclusive across processes) proves every record
   * a leftover; holding it shared proves that only for exclusive records and for dead pids.
   */
  async clearLeftovers(
    mechanism: LockMechanism,
    files: KeyFiles,
    mode: LockRequest['mode'],
    attempt: Granted,
    detectedBy: FileStaleRecord['detectedBy'],
  ): Promise<LockRecord[]> {
    const cleared: LockRecord[] = [];
    const exclusive = mode === 'exclusive' || mechanism.kind === 'exclusive-create';
    // The claim has already replaced a leftover kept in the lock; record files are removed here.
    const found = [
      ...(attempt.leftover ? [{ record: attempt.leftover, path: files.anchorPath, mtimeMs: 0 }] : []),
      ...(attempt.scanRecords ? await readRecords(files.holdersPath) : []),
    ];
    for (const entry of found) {
      if (entry.record.key !== files.key) continue;
      const proven = exclusive || entry.record.mode === 'exclusive';
      const reason =
        attempt.tookOver ??
        deadHolderReason(entry.record) ??
        (proven ? `the lock was free although pid ${entry.record.pid} on ${entry.record.hostname} left a record` : null);
      if (!reason) continue;
      cleared.push(this.report(entry, reason, detectedBy));
      if (entry.path !== files.anchorPath) await removeQuietly(entry.path);
    }
    if (attempt.scanRecords && exclusive) attempt.claim.recordsSwept?.();
    return cleared;
  }

  describe(entry: FoundRecord, mechanism: LockMechanism, detectedBy: FileStaleRecord['detectedBy']): LockRecord {
    // Without the lock only a dead pid here proves a holder gone (records of this process may
    // be mid-acquisition, written just before the grant is registered).
    const stale = deadHolderReason(entry.record);
    const expiresInMs =
      mechanism.kind === 'kernel' ? null : Math.max(0, Math.ceil(entry.record.ttlMs - (Date.now() - entry.mtimeMs)));
    // One lock file keeps the records of many grants in turn: the grant id tells them apart.
    const id = `${entry.path}#${entry.record.grantId}`;
    if (stale && !this.reportedStale.has(id)) {
      if (this.reportedStale.size >= MAX_REMEMBERED_STALE) this.reportedStale.clear();
      this.reportedStale.add(id);
      this.report(entry, stale, detectedBy);
    }
    return toLockRecord(entry, expiresInMs, stale);
  }

  report(entry: FoundRecord, reason: string, detectedBy: FileStaleRecord['detectedBy']): LockRecord {
    const record = toLockRecord(entry, null, reason);
    const meta: FileStaleRecord = { ...record, stale: reason, detectedBy, recordPath: entry.path };
    this.logger.warn(
      `Stale holder of lock "${record.key}" (${detectedBy}): ${reason}; it was ${record.ownerId} ` +
        `(pid ${record.pid} on ${record.hostname}, ${record.mode}, fencing token ${record.fencingToken}, ` +
        `since ${recordTime(record.acquiredAt)})`,
    );
    if (this.onStale) {
      try {
        void Promise.resolve(this.onStale(meta)).catch((error: unknown) => this.hookFailed(error));
      } catch (error) {
        this.hookFailed(error);
      }
    }
    return record;
  }

  private hookFailed(error: unknown): void {
    this.logger.error(`file.onStale threw: ${errorMessage(error)}`);
  }

  private reaperOwner(): LockRequest['owner'] {
    return { ownerId: `force-release:${HOSTNAME}:${process.pid}`, instanceId: 'force-release', hostname: HOSTNAME, pid: process.pid };
  }
}

/** A record for `request`; its fencing token is set by whoever grants it. */
export function newRecord(request: LockRequest): StoredRecord {
  // holderRecord's expiresInMs stays on the object (copying the rest out cost a cycle ~0.3 µs)
  // but is never stored: serializeRecord writes the stored fields only.
  return Object.assign(holderRecord(request, 0), { v: 1 as const, grantId: newGrantId() });
}
