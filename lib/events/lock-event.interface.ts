import type { SkipReason } from '../held-lock.interface';
import type { ForceReleaseOutcome, LockMode } from '../lock-backend.interface';
import type { LockLostReason } from '../lock.errors';

/**
 * What every event of one acquisition carries. `name` is bounded (the `@WithLock` template or
 * the caller's `name` option, `'unnamed'` otherwise): group and count by it, never by `key`.
 */
export interface LockAttemptEventBase {
  /** The key (without `keyPrefix`); the first key of a set taken at once. */
  key: string;
  /** Every key of the acquisition (one, or a lock set taken in one store call). */
  keys: readonly string[];
  name: string;
  mode: LockMode;
  /** The backend's name (`memory`, `file`, `redis` or a custom one). */
  backend: string;
  /** Tells the events of one acquisition from another's (contended → handed-over → acquired). */
  attemptId: number;
}

/** The lock is ours. `durationMs` counts from the call, waits included. */
export interface LockAcquiredEvent extends LockAttemptEventBase {
  type: 'acquired';
  durationMs: number;
  /** The attempt found the lock taken and waited for it. */
  waited: boolean;
  fencingToken: number;
}

/** The attempt found the lock taken; `waiting` when it now waits (queued) instead of giving up. */
export interface LockContendedEvent extends LockAttemptEventBase {
  type: 'contended';
  waiting: boolean;
  /** When the acquisition began (ms since the epoch, fractional): where its trace span starts. */
  startedAt: number;
}

/** A wait ended, however it ended. */
export interface LockWaitedEvent extends LockAttemptEventBase {
  type: 'waited';
  durationMs: number;
  outcome: LockAttemptOutcome;
}

/** The lock was passed straight to this waiter: by a holder of this process (`local`) or by the store's queue (`store`). */
export interface LockHandedOverEvent extends LockAttemptEventBase {
  type: 'handed-over';
  via: 'local' | 'store';
}

/** The attempt ended without the lock: taken (`held`, no wait) or still taken after `waitMs` (`timeout`). */
export interface LockMissedEvent extends LockAttemptEventBase {
  type: 'missed';
  durationMs: number;
  outcome: 'held' | 'timeout';
  reason: SkipReason;
}

/** Taking the lock failed: the store is down or slow, or the module is shutting down. */
export interface LockFailedEvent extends LockAttemptEventBase {
  type: 'failed';
  durationMs: number;
  error: unknown;
}

/** A held lease was released by its holder. */
export interface LockReleasedEvent {
  type: 'released';
  key: string;
  name: string;
  mode: LockMode;
  backend: string;
  fencingToken: number;
  heldMs: number;
}

/** A held lease ended without its holder releasing it (its `signal` aborted). */
export interface LeaseLostEvent {
  type: 'lost';
  key: string;
  name: string;
  mode: LockMode;
  backend: string;
  fencingToken: number;
  reason: LockLostReason;
}

/** A heartbeat (one batched extend of `leases` leases) could not reach the store; the leases count down locally. */
export interface LockHeartbeatFailedEvent {
  type: 'heartbeat-failed';
  backend: string;
  leases: number;
  error: unknown;
}

/** An operator's reap (`forceRelease`), whatever its outcome. */
export interface LockReapedEvent {
  type: 'reaped';
  key: string;
  backend: string;
  reason: string;
  caller: string;
  outcome: ForceReleaseOutcome['outcome'];
}

export type LockAttemptOutcome = 'acquired' | 'held' | 'timeout' | 'error';

/** One typed stream: everything that happens to the locks of this module instance. */
export type LockEvent =
  | LockAcquiredEvent
  | LockContendedEvent
  | LockWaitedEvent
  | LockHandedOverEvent
  | LockMissedEvent
  | LockFailedEvent
  | LockReleasedEvent
  | LeaseLostEvent
  | LockHeartbeatFailedEvent
  | LockReapedEvent;

export type LockEventType = LockEvent['type'];

/** Every event type, in the order a lock lives them. */
export const LOCK_EVENT_TYPES: readonly LockEventType[] = [
  'contended',
  'handed-over',
  'waited',
  'acquired',
  'missed',
  'failed',
  'released',
  'lost',
  'heartbeat-failed',
  'reaped',
];

/** `lock.name` when a call gives none: bounded, unlike keys (README: Observability). */
export const DEFAULT_LOCK_NAME = 'unnamed';
