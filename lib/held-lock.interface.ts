import type { LockMode, LockRecord, ReleaseOutcome } from './lock-backend.interface';
import type { LockLostReason } from './lock.errors';

/** A lease this process holds. */
export interface HeldLock {
  /** The key as the caller named it (without `keyPrefix`). */
  readonly key: string;
  /** Unguessable per-grant token; the store only honours release/extend with it. */
  readonly token: string;
  /**
   * Strictly increasing per key across all grants. Pass it to the resource you write and let
   * the resource reject writes carrying a smaller token than one it has seen.
   */
  readonly fencingToken: number;
  readonly mode: LockMode;
  /** The semaphore size this permit was granted under (`limit`); absent for a plain lock. */
  readonly limit?: number;
  /** Aborted (with a `LockLostError` reason) as soon as this lease is known or feared lost. */
  readonly signal: AbortSignal;
  /**
   * Synchronous lease check, for the moment before a side effect: throws `LockLostError` when
   * the lease is lost, released, or its local deadline (monotonic clock, from the last
   * confirmed heartbeat, minus a margin) has passed — even if no timer has run yet, as after
   * a process pause. A lapse found here aborts `signal` at once. No round trip.
   */
  ensureHeld(): void;
  /** Extend the lease now (compare-and-extend). Resolves `false` when it is no longer ours. */
  extend(ttlMs?: number): Promise<boolean>;
  /** Compare-and-release. Idempotent; never rejects for an expired lease. */
  release(): Promise<ReleaseOutcome>;
}

/** Per-call options of `withSpaceLock`, `tryAcquire` and `acquire`. */
export interface LockCallOptions {
  /** Lease length for this call. Default: the module's `ttlMs`. */
  ttlMs?: number;
  /** Wait up to this long for the lock instead of giving up at once. Default 0. */
  waitMs?: number;
  /**
   * `exclusive` (default) or `shared`: readers together, a writer alone (backends with the
   * `shared` capability: memory, file, Redis).
   */
  mode?: LockMode;
  /**
   * A semaphore: at most `limit` holders of the key at once, each with its own lease and
   * fencing token (backends with the `limit` capability). An integer from 1 to 10 000; `1` (the
   * default) is a plain lock. Every caller of a key must pass the same limit, or the call
   * throws `LockLimitMismatchError`. Not with `mode: 'shared'`.
   */
  limit?: number;
  /** Owner recorded for this grant. Default: the module's `ownerId`. */
  ownerId?: string;
  /**
   * Keep the lease taken until at least this long after the grant, even when the work ends
   * sooner (ShedLock's `lockAtLeastFor`): the caller gets its result at once, heartbeats stop,
   * and the lease runs out on its own. Default 0 (released when the work ends).
   */
  minHoldMs?: number;
  /**
   * What metrics, traces and lock events call this lock (`lock.name`): a bounded name such as
   * `space-sync`, never a key with ids in it. Default `'unnamed'`; `@WithLock` uses its template.
   */
  name?: string;
}

/**
 * One key of a lock set (`withSpaceLocks`, `acquireMany`, `tryAcquireMany`): the key alone, taken
 * with the set's call options, or with its own `mode` / `limit` (a set may read some keys and
 * write others).
 */
export type LockSetKey = string | { key: string; mode?: LockMode; limit?: number };

export type SkipReason = 'in-progress' | 'lock-held';

/** What `withSpaceLock` returns instead of running `fn` when the lock is taken. */
export interface Skipped {
  skipped: SkipReason;
}

export function isSkipped(value: unknown): value is Skipped {
  return (
    typeof value === 'object' &&
    value !== null &&
    ((value as Skipped).skipped === 'in-progress' || (value as Skipped).skipped === 'lock-held') &&
    Object.keys(value).length === 1
  );
}

/** A holder as the service reports it. */
export interface LockInfo extends LockRecord {
  /** The key without `keyPrefix`. */
  key: string;
  /** Milliseconds since `acquiredAt`. */
  ageMs: number;
  /** Held by this module instance. */
  local: boolean;
  /** How many holders the key has (more than one only in shared mode or with `limit`). */
  holderCount: number;
}

/** A lease held by this process, as `held()` lists it. */
export interface HeldLockSummary {
  key: string;
  token: string;
  fencingToken: number;
  mode: LockMode;
  /** Set on semaphore permits. */
  limit?: number;
  ownerId: string;
  acquiredAt: number;
}

export interface LockLostEvent {
  key: string;
  fencingToken: number;
  reason: LockLostReason;
}

/** Who waits for a key, as `waiters(key)` reports it. */
export interface LockWaiters {
  /** Callers of any process waiting in the store; `null` where the backend keeps no queue (file). */
  queued: number | null;
  /** Callers of this module instance queued behind its own holder of the key (never in `queued`). */
  local: number;
}

export interface ListLocksOptions {
  /** Only keys starting with this (without `keyPrefix`). Default: all. */
  prefix?: string;
  /** At most this many records. Default 1 000. */
  limit?: number;
}

export interface ForceReleaseOptions {
  /** Why; logged at warn with the caller. Required. */
  reason: string;
  /** Only reap if the holder still has this fencing token. */
  expectFencingToken?: number;
  /** Who asks; default the module's `ownerId`. */
  caller?: string;
}

export interface AcquireManyResult {
  acquired: HeldLock[];
  /** Keys we could not take, with their holder when known. */
  unavailable: { key: string; reason: SkipReason; holder: LockInfo | null }[];
}
