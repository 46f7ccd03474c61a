/** `exclusive`: one holder; `shared`: any number of shared holders, never beside an exclusive one. */
export type LockMode = 'exclusive' | 'shared';

/** Who asks for a lock; stored with every grant so operators can see it. */
export interface LockOwner {
  /** Stable, human-meaningful owner (default `<hostname>:<pid>`). */
  ownerId: string;
  /** Random id of the `SpaceLockService` instance (one per module instance). */
  instanceId: string;
  hostname: string;
  pid: number;
}

/** One attempt to take `key`. `key` already carries the module's `keyPrefix`. */
export interface LockRequest {
  key: string;
  /** Unguessable, unique per grant: the only proof of ownership the backend accepts. */
  token: string;
  ttlMs: number;
  mode: LockMode;
  owner: LockOwner;
  /**
   * Present when the caller will wait up to `waitMs` for the lock; `token` is then the same on
   * every attempt of that wait. A backend that keeps waiters in order queues the token on a
   * miss and, on release, passes the lock to the first waiter in the queue (see
   * `waitForRelease`), so a waiter of another process is not beaten by whoever releases and
   * asks again at once. Others ignore it.
   */
  queue?: { waitMs: number };
  /**
   * A semaphore: at most `limit` holders of `key` at once, each with its own lease and fencing
   * token. Absent for a plain lock. Only with `mode: 'exclusive'` (the service refuses `shared` +
   * `limit`). Always >= 2 when present (the service turns `limit: 1` into a plain lock).
   */
  limit?: number;
}

export type AcquireOutcome =
  | { acquired: true; fencingToken: number }
  | {
      acquired: false;
      /** How long the current holder's lease still runs, when the backend knows it. */
      retryAfterMs: number | null;
      /** The key is held as a semaphore of another size (or as a plain lock while a semaphore was asked, `1`): a caller error, not contention. */
      limitInUse?: number;
    };

/**
 * The answer of `tryAcquireAll`: every request granted, or none. On a miss `held` names, in
 * request order, the keys found held (at least one; on a Redis Cluster only those of the
 * first slot group that failed) with their holders' remaining lease.
 */
export type AcquireAllOutcome =
  | {
      acquired: true;
      /** One per request, in request order. */
      fencingTokens: number[];
    }
  | {
      acquired: false;
      /** `limitInUse` as in `AcquireOutcome`: that key is held with another limit. */
      held: { key: string; retryAfterMs: number | null; limitInUse?: number }[];
    };

/** What the backend needs to recognise a grant it handed out. */
export interface LeaseRef {
  key: string;
  token: string;
  mode: LockMode;
  /** The semaphore size the lease was granted under; absent for a plain lock. */
  limit?: number;
}

export interface ExtendRequest extends LeaseRef {
  ttlMs: number;
}

/** `expired`: nobody holds it any more; `not-owner`: someone else holds it now. */
export type ReleaseOutcome = 'released' | 'expired' | 'not-owner';

/**
 * A lease the store passed to a queued waiter on release (`waitForRelease` with its token):
 * the waiter holds it already, granted after its last `tryAcquire` was sent.
 */
export interface PassedLease {
  fencingToken: number;
}

/** A holder record as a backend stores it. */
export interface LockRecord {
  key: string;
  ownerId: string;
  instanceId: string;
  hostname: string;
  pid: number;
  mode: LockMode;
  /** Epoch milliseconds. */
  acquiredAt: number;
  /** Remaining lease, or `null` where the backend has no expiry (kernel file locks). */
  expiresInMs: number | null;
  fencingToken: number;
  ttlMs: number;
  /** Set when the backend believes the holder is gone (dead pid on this host, expired lease). */
  stale?: string;
  /** Set on semaphore permits. */
  limit?: number;
}

export interface ListOptions {
  /** Only keys starting with this (already includes the module's `keyPrefix`). */
  prefix: string;
  /** Upper bound on records returned. */
  limit: number;
}

export interface ForceReleaseRequest {
  key: string;
  reason: string;
  /**
   * Only reap when the current holder still has this fencing token (compare-aware reap). On a
   * key with several holders (shared or permits) it evicts exactly the holder with that token
   * (`changed-hands` when none has it); without it, every holder is evicted and `previous` is
   * the oldest.
   */
  expectFencingToken?: number;
}

export type ForceReleaseOutcome =
  | { outcome: 'released'; previous: LockRecord | null }
  | { outcome: 'not-held' }
  | { outcome: 'changed-hands'; current: LockRecord | null }
  | { outcome: 'held-by-live-process'; pid: number; hostname: string };

export interface LockBackendCapabilities {
  shared: boolean;
  /** `limit` (semaphores). */
  limit: boolean;
  /**
   * Every call completes inside this process without I/O (the memory backend): the service
   * then puts no `backendTimeoutMs` deadline on it. Default `false`.
   */
  inProcess?: boolean;
}

/**
 * The contract every lock store implements. It is deliberately small: the service owns
 * the in-process mutex, heartbeats, waiting and the lost-lease signal, so a backend only
 * has to answer a handful of atomic questions about one key.
 *
 * The same name is a DI token (the `LockBackend` symbol at the end of this file), in the
 * style of @nestjs/throttler: `@Inject(LockBackend) backend: LockBackend`.
 */
export interface LockBackend {
  /** Short name used in logs and errors (`memory`, `redis`, `file`, ...). */
  readonly name: string;
  readonly capabilities: LockBackendCapabilities;

  /** Called once at bootstrap, before the first lock; may probe and warn. */
  init?(): Promise<void>;

  /**
   * One non-blocking attempt. Must be atomic: take the lock and mint the fencing token together.
   * One fencing counter per key, shared by both modes and all permits: tokens rise strictly per key.
   */
  tryAcquire(request: LockRequest): Promise<AcquireOutcome>;

  /**
   * Optional: take several distinct keys at once, all or none, in as few round trips as the
   * store allows (Redis: one script; on a Cluster one per hash slot, rolled back if a later
   * one fails). Requests may mix modes and limits; each granted request gets its own fencing
   * token. Backends without it are
   * asked key by key, in sorted order.
   */
  tryAcquireAll?(requests: readonly LockRequest[]): Promise<AcquireAllOutcome>;

  /**
   * Compare-and-extend many leases in one round trip where the store allows it.
   * Answers, in order, whether each lease is still ours, or `null` where the store could not
   * say (part of a cluster unreachable). Throws when the store cannot be reached at all; in
   * both cases the service keeps counting down the local lease.
   */
  extend(leases: readonly ExtendRequest[]): Promise<(boolean | null)[]>;

  /** Compare-and-release; wakes waiters on success. */
  release(lease: LeaseRef): Promise<ReleaseOutcome>;

  /**
   * Optional: pass a held lease straight to a waiter of this process in one atomic step
   * (new token, new fencing token, fresh TTL), saving a release + acquire round trip.
   * Resolves `null` when `from` is no longer ours. Only ever called for plain exclusive
   * leases (never shared or `limit` ones).
   */
  handOver?(from: LeaseRef, to: LockRequest): Promise<{ fencingToken: number } | null>;

  /**
   * Resolve when `key` may have become free (a release was seen), after `timeoutMs`, or when
   * `signal` aborts (shutdown), whichever is first; resolving is enough, it need not reject.
   * Never used as proof of anything: the caller always retries `tryAcquire` — unless the
   * store passed the lease to the waiter that queued with `token`, which it then returns
   * (for shared and `limit` requests too, where the store keeps a FIFO queue).
   */
  waitForRelease(key: string, timeoutMs: number, signal: AbortSignal, token?: string): Promise<PassedLease | void>;

  /**
   * A waiter that queued with `token` gave up: take it out of `key`'s queue, and pass on a
   * turn (or a lease) already given to it.
   */
  leaveQueue?(key: string, token: string): Promise<void>;

  /** Every current holder of `key` (several for shared mode), oldest first. */
  inspect(key: string): Promise<LockRecord[]>;

  list(options: ListOptions): Promise<LockRecord[]>;

  /** An operator's reap; see `ForceReleaseOutcome`. */
  forceRelease(request: ForceReleaseRequest): Promise<ForceReleaseOutcome>;

  /**
   * Optional: how many callers (of any process) wait in the store for `key` now, for operators
   * (the admin page). Backends that keep no queue leave it out; the service then reports only
   * this process's own waiters.
   */
  queueLength?(key: string): Promise<number>;

  /** Release resources the backend created (connections, watchers, fds). */
  close?(): Promise<void>;
}

/** DI token for the active backend; shares its name with the interface (type and token in one). */
export const LockBackend = Symbol('LockBackend');
