import type { LockMode } from '../../lock-backend.interface';
import type { FoundRecord, StoredRecord } from './holder-record-format';
import type { KeyFiles } from './lock-file-names';

/**
 * One process's hold on one lock file; shared by all in-process holders of that file. Methods
 * answer synchronously where the mechanism's calls are (kernel locks), else with a Promise.
 */
export interface Claim {
  readonly fencingToken: number;
  /** Exclusive claims: mint a newer fencing token for `record`'s grant while keeping the lock; `null` when no longer ours. */
  renew(record: StoredRecord): number | null | Promise<number | null>;
  /** Heartbeat; `false` when the claim is no longer ours. */
  refresh(ttlMs: number): boolean | Promise<boolean>;
  /** Mechanisms that keep the exclusive holder's record: replace it (its TTL changed). */
  rewrite?(record: StoredRecord): void;
  /** Mechanisms that keep the exclusive holder's record: the key's record files were swept under this exclusive claim. */
  recordsSwept?(): void;
  /** Give the lock up and wake waiters; `false` when it was no longer ours. Called once. */
  release(): boolean | Promise<boolean>;
  /** Time left before others may take it over; `null` when only the holder's death frees it. */
  expiresInMs(): number | null;
}

export type ClaimAttempt =
  | {
      claim: Claim;
      /** Set when the lock was taken over an abandoned claim (exclusive-create): why it was judged abandoned. */
      tookOver?: string;
      /** The record an exclusive holder left in the lock without releasing it (it died). */
      leftover?: StoredRecord;
      /** Holder record files of this key may exist and must be checked for leftovers. */
      scanRecords: boolean;
    }
  | {
      claim: null;
      retryAfterMs: number | null;
      /** Pid of the exclusive holder when it runs on this host: waiters watch it die (SIGKILL makes no event). */
      holderPid?: number;
    };

export interface LockMechanism {
  readonly kind: 'kernel' | 'exclusive-create';
  /**
   * `true`: an exclusive grant's holder record lives in the lock itself (written by `claim` and
   * `renew`, removed by `release`), so the backend writes no record file for it.
   */
  readonly keepsExclusiveRecord: boolean;
  /**
   * One non-blocking attempt; sets `record.fencingToken` when granted. `force` (operator reap)
   * takes an exclusive-create lock even from a live holder; a kernel lock cannot be taken from
   * a live holder, so there it changes nothing.
   */
  claim(files: KeyFiles, mode: LockMode, record: StoredRecord, force?: boolean): ClaimAttempt | Promise<ClaimAttempt>;
  /** The exclusive holder's record kept in the lock (read without locking), or `null`. */
  lockRecord(anchorPath: string): FoundRecord | null;
  /** Release what the mechanism keeps open (idle descriptors); held claims are not touched. */
  close(): void;
}
