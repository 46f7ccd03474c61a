/** Base class of every error this library throws on purpose. */
export class LockError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Someone else holds the lock (another process, replica, or this process for another call). */
export class LockHeldError extends LockError {
  constructor(
    readonly key: string,
    /** Remaining lease of the current holder, when known. */
    readonly retryAfterMs: number | null,
    readonly reason: 'in-progress' | 'lock-held' = 'lock-held',
  ) {
    super(`Lock "${key}" is held${reason === 'in-progress' ? ' by this process' : ''}`);
  }
}

/** `waitMs` ran out before the lock became free. */
export class LockTimeoutError extends LockError {
  constructor(
    readonly key: string,
    readonly waitedMs: number,
    /** Remaining lease of the holder when we gave up, when known. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(`Timed out after ${waitedMs} ms waiting for lock "${key}"`);
  }
}

/** The lock store could not answer (unreachable, timed out, script error). Not contention. */
export class LockBackendError extends LockError {
  constructor(
    readonly backend: string,
    message: string,
    cause?: unknown,
  ) {
    super(`Lock backend "${backend}" failed: ${message}`, { cause });
  }
}

/** The module is shutting down: no new locks are granted. */
export class LockShuttingDownError extends LockError {
  constructor() {
    super('The lock module is shutting down; no new locks are granted');
  }
}

/** A key, key template or template value that cannot name a lock. */
export class InvalidLockKeyError extends LockError {
  constructor(
    readonly key: unknown,
    readonly reason: string,
  ) {
    super(`Invalid lock key ${describe(key)}: ${reason}`);
  }
}

/** Module or call options that cannot work; raised at bootstrap or at the call. */
export class LockOptionsError extends LockError {}

/** The backend cannot do what was asked (for example `limit` on the file backend). */
export class LockNotSupportedError extends LockError {}

/**
 * The key is held with another `limit` than the one asked (`1`: a plain lock): two callers
 * disagree on what the key is, a caller error rather than contention, so it is thrown at once
 * and never waited on. Over HTTP it answers 409 Conflict (`LockInterceptor.limitMismatchException`).
 */
export class LockLimitMismatchError extends LockError {
  constructor(
    readonly key: string,
    /** The limit asked for (`1` for a plain lock). */
    readonly requestedLimit: number,
    /** The limit the key's current holders were granted with (`1` for a plain lock). */
    readonly limitInUse: number,
  ) {
    super(
      `Lock "${key}" is held ${limitInUse === 1 ? 'as a plain lock' : `with limit ${limitInUse}`}, ` +
        `not ${requestedLimit === 1 ? 'as a plain lock' : `with limit ${requestedLimit}`}: every caller of a key must use the same limit`,
    );
  }
}

/** The reason an aborted `HeldLock.signal` carries: the lease is no longer ours. */
export class LockLostError extends LockError {
  constructor(
    readonly key: string,
    readonly fencingToken: number,
    readonly reason: LockLostReason,
  ) {
    super(`Lost lock "${key}" (fencing token ${fencingToken}): ${LOST_REASON_TEXT[reason]}`);
  }
}

export type LockLostReason = 'taken-over' | 'lease-timed-out' | 'shutdown' | 'released';

const LOST_REASON_TEXT: Record<LockLostReason, string> = {
  'taken-over': 'the store no longer has our token (expired or reaped)',
  'lease-timed-out': 'no heartbeat could extend the lease before it ran out',
  shutdown: 'the application is shutting down',
  released: 'it was released',
};

function describe(value: unknown): string {
  if (typeof value !== 'string') return `(${typeof value})`;
  const shown = value.length > 60 ? `${value.slice(0, 60)}…` : value;
  return JSON.stringify(shown);
}

/** The message of anything thrown, for log lines; duck-typed, as errors from another realm (vm, jest) fail `instanceof Error`. */
export function errorMessage(error: unknown): string {
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message;
  }
  return String(error);
}
