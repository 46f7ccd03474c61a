import { performance } from 'node:perf_hooks';
import { isObservable, Observable } from 'rxjs';
import type { HeldLock, LockCallOptions, LockSetKey, SkipReason } from './held-lock.interface';
import type { HeldLeases } from './held-leases';
import { Lease } from './lease';
import type { LockAcquirer } from './lock-acquirer';
import type { Attempt, Miss, SetAttempt } from './lock-attempt';
import type { LockError } from './lock.errors';
import type { LockSets } from './lock-sets';

type Work<T> = (locks: HeldLock[]) => T | Promise<T>;

/** The lock stayed taken (held by another, or by this process, past `waitMs`). */
export interface LockMiss {
  /** The first key (without `keyPrefix`) that stayed taken. */
  key: string;
  skipped: SkipReason;
  retryAfterMs: number | null;
  /** As `acquire` / `acquireMany` would throw it: `LockTimeoutError` after a wait, else `LockHeldError`. */
  error(): LockError;
}

/** What one caller of `runUnderLock` does with the outcomes that are not its work's. */
export interface LockRunHandlers<M> {
  /** The lock stayed taken: what the call answers instead (or throw). */
  missed(miss: LockMiss): M;
  /** Taking the lock failed (bad key or options, store down, shutting down): what to throw instead. Default: the error. */
  failed?(error: unknown): unknown;
  /** Keep the lock while an Observable result runs (until it completes, errors or is unsubscribed). */
  holdsStreams?: boolean;
}

/**
 * The one "run under lock": take the key (`run`) or every key of a set (`runSet`: all or
 * none, sorted), run the work, release in `finally` — a failed release is logged and never
 * replaces the work's result or error. `withSpaceLock(s)`, `@WithLock` routes, handlers of
 * other transports and provider methods all come here; they differ only in their handlers.
 */
export class LockRunner {
  constructor(
    private readonly acquirer: LockAcquirer,
    private readonly sets: LockSets,
    private readonly leases: HeldLeases,
  ) {}

  /** Run `work` holding `key`. */
  async run<T, M>(key: string, options: LockCallOptions | undefined, work: Work<T>, handlers: LockRunHandlers<M>): Promise<T | M | Observable<unknown>> {
    const started = performance.now();
    let attempt: Attempt;
    try {
      attempt = await this.acquirer.attempt(key, options);
    } catch (error) {
      throw handlers.failed ? handlers.failed(error) : error;
    }
    if (!(attempt instanceof Lease)) return handlers.missed(this.miss(key, attempt, options, started));
    return this.holding([attempt], work, handlers);
  }

  /** Run `work` holding every key of `keys` (all or none, taken in sorted order). */
  async runSet<T, M>(keys: readonly LockSetKey[], options: LockCallOptions | undefined, work: Work<T>, handlers: LockRunHandlers<M>): Promise<T | M | Observable<unknown>> {
    const started = performance.now();
    let set: SetAttempt;
    try {
      set = await this.sets.attemptSet(this.sets.members(keys, options));
    } catch (error) {
      throw handlers.failed ? handlers.failed(error) : error;
    }
    if ('missed' in set) return handlers.missed(this.miss(set.missed[0].key, set.missed[0], options, started));
    return this.holding(set.leases, work, handlers);
  }

  private async holding<T, M>(locks: Lease[], work: Work<T>, handlers: LockRunHandlers<M>): Promise<T | Observable<unknown>> {
    let result: T;
    try {
      result = await work(locks);
    } catch (error) {
      await this.leases.releaseAll(locks);
      throw error;
    }
    if (handlers.holdsStreams && isObservable(result)) return releasedWhenDone(result, () => this.leases.releaseAll(locks));
    await this.leases.releaseAll(locks);
    return result;
  }

  private miss(key: string, { skipped, retryAfterMs }: Miss, options: LockCallOptions | undefined, started: number): LockMiss {
    const acquirer = this.acquirer;
    return { key, skipped, retryAfterMs, error: () => acquirer.missError(key, { skipped, retryAfterMs }, options, started) };
  }
}

/**
 * `source`, with `release` run once when it completes (before the completion is passed on, so
 * Nest writes a plain response only after the lock is free), errors (before the error) or is
 * unsubscribed early. One Observable instead of an operator chain: this is on every request.
 */
function releasedWhenDone<T>(source: Observable<T>, release: () => Promise<void>): Observable<T> {
  return new Observable<T>((subscriber) => {
    let released: Promise<void> | undefined;
    const releaseOnce = (): Promise<void> => (released ??= release());
    const subscription = source.subscribe({
      next: (value) => subscriber.next(value),
      error: (error: unknown) => void releaseOnce().then(() => subscriber.error(error)),
      complete: () => void releaseOnce().then(() => subscriber.complete()),
    });
    return () => {
      subscription.unsubscribe();
      void releaseOnce();
    };
  });
}
