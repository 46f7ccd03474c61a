import { Logger } from '@nestjs/common';
import { BoundedCall, CallDeadlines, type BoundedCallKind } from './call-deadlines';
import type { LockBackend } from './lock-backend.interface';
import { errorMessage, LockBackendError, LockError } from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';

export type LateResultHandler<T = unknown> = (value: T) => void;

/**
 * Every call to the store: bounded in time (`backendTimeoutMs`, one shared timer), and any
 * failure that is not one of ours mapped to a `LockBackendError`, so callers can tell
 * "store down" from "busy". Also notes when the store stops and starts answering again.
 */
export class StoreCalls {
  private readonly logger = new Logger('SpaceLockService');
  private readonly deadlines: CallDeadlines;
  private backendFailing = false;
  /** Store calls whose caller takes the answer as it is. */
  private readonly plainCalls: BoundedCallKind<unknown, unknown, LateResultHandler | undefined> = {
    answered: (value) => {
      this.backendRecovered();
      return value;
    },
    failed: (call, error, timedOut) => this.callError(call, error, timedOut),
  };
  /** The same, with something to do with a late answer (the subject): shutdown waits for it. */
  private readonly lateHandledCalls: BoundedCallKind<unknown, unknown, LateResultHandler | undefined> = {
    ...this.plainCalls,
    answeredLate: (value, call) => call.subject?.(value),
  };

  constructor(
    private readonly backend: LockBackend,
    private readonly options: ResolvedLockModuleOptions,
  ) {
    this.deadlines = new CallDeadlines(options.backendTimeoutMs);
  }

  /** `run()`'s answer, bounded; `onLateResult` gets an answer that came after the timeout. */
  call<T>(operation: string, run: () => Promise<T>, onLateResult?: LateResultHandler<T>): Promise<T> {
    const kind = (onLateResult ? this.lateHandledCalls : this.plainCalls) as BoundedCallKind<T, T, LateResultHandler<T> | undefined>;
    return new BoundedCall(kind, operation, onLateResult).follow(invoke(run, undefined, undefined), this.callDeadlines);
  }

  /**
   * `method.call(backend, arg)` as one bounded call whose answer `kind` maps: no closure per
   * call on the paths every lock takes (bench/NOTES.md, fourth session).
   */
  follow<A, T, R, S>(kind: BoundedCallKind<T, R, S>, operation: string, subject: S, method: (arg: A) => Promise<T>, arg: A): Promise<R> {
    return new BoundedCall(kind, operation, subject).follow(invoke(method, this.backend, arg), this.callDeadlines);
  }

  /** Resolves once no bounded call is pending (answered or timed out). */
  idle(): Promise<void> {
    return this.deadlines.idle();
  }

  /** Calls to a store in this process are not bounded: nothing on a wire to wait for, and a timer would cost more than the call. */
  private get callDeadlines(): CallDeadlines | null {
    return this.backend.capabilities.inProcess ? null : this.deadlines;
  }

  /** A timeout, or any failure that is not one of ours, as a `LockBackendError`. */
  callError(call: { operation: string }, error: unknown, timedOut: boolean): LockError {
    if (timedOut) return new LockBackendError(this.backend.name, `${call.operation} timed out after ${this.options.backendTimeoutMs} ms`);
    return this.asLockError(call.operation, error);
  }

  private asLockError(operation: string, error: unknown): LockError {
    return error instanceof LockError ? error : new LockBackendError(this.backend.name, `${operation}: ${errorMessage(error)}`, error);
  }

  noteBackendFailure(what: string, error: unknown): void {
    if (this.backendFailing) return;
    this.backendFailing = true;
    this.logger.warn(`Lock backend "${this.backend.name}" failed during ${what}: ${errorMessage(error)}; leases count down locally`);
  }

  backendRecovered(): void {
    if (!this.backendFailing) return;
    this.backendFailing = false;
    this.logger.log(`Lock backend "${this.backend.name}" answers again`);
  }
}

/**
 * `method.call(target, arg)` as a promise: a synchronous throw becomes a rejection, and a
 * backend that answers without a promise is still followed (a native promise passes as is).
 */
function invoke<A, T>(method: (arg: A) => Promise<T>, target: unknown, arg: A): Promise<T> {
  try {
    return Promise.resolve(method.call(target, arg));
  } catch (error) {
    return Promise.reject(error);
  }
}
