import type { LockMode } from '../../lock-backend.interface';
import type { KeyFiles } from './lock-file-names';

/** Who claims; the exclusive-create mechanism stores it in its claim file. */
export interface ClaimIdentity {
  grantId: string;
  ownerId: string;
  hostname: string;
  pid: number;
  ttlMs: number;
}

/** One process's hold on one lock file; shared by all in-process holders of that file. */
export interface Claim {
  readonly fencingToken: number;
  /** Exclusive claims: mint a newer fencing token while keeping the lock; `null` when no longer ours. */
  renew(identity: ClaimIdentity): Promise<number | null>;
  /** Heartbeat; `false` when the claim is no longer ours. */
  refresh(ttlMs: number): Promise<boolean>;
  /** Give the lock up and wake waiters; `false` when it was no longer ours. Called once. */
  release(): Promise<boolean>;
  /** Time left before others may take it over; `null` when only the holder's death frees it. */
  expiresInMs(): number | null;
}

export type ClaimAttempt =
  | {
      claim: Claim;
      /** Set when the lock was taken over an abandoned claim (exclusive-create): why it was judged abandoned. */
      tookOver?: string;
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
   * One non-blocking attempt. `force` (operator reap) takes an exclusive-create lock even from
   * a live holder; a kernel lock cannot be taken from a live holder, so there it changes nothing.
   */
  claim(files: KeyFiles, mode: LockMode, identity: ClaimIdentity, force?: boolean): Promise<ClaimAttempt>;
}
