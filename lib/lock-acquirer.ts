import { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import type { BoundedCallKind } from './call-deadlines';
import type { LockCallOptions } from './held-lock.interface';
import type { HeldLeases } from './held-leases';
import { Lease } from './lease';
import type { LocalKey, LocalKeyTable } from './local-key-table';
import type { Attempt, CallOptions, Miss } from './lock-attempt';
import type { AcquireOutcome, LockBackend, LockRequest, PassedLease } from './lock-backend.interface';
import {
  errorMessage,
  LockError,
  LockHeldError,
  LockLimitMismatchError,
  LockNotSupportedError,
  LockShuttingDownError,
  LockTimeoutError,
} from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { assertValidKey, resolveCallOptions } from './lock-options.validation';
import { newLockToken } from './lock-token';
import type { ShutdownGate } from './shutdown-gate';
import type { StoreCalls } from './store-calls';
import type { AttemptWatch, LockEvents } from './events/lock-events';

/**
 * Taking one key: this process's slot for it first (`LocalKeyTable`, waiting behind a local
 * holder if need be), then the store, waiting for releases until `waitMs` passes. Reads top to
 * bottom: key table, store calls and `HeldLeases` answer; none of them calls back here.
 */
export class LockAcquirer {
  private readonly logger = new Logger('SpaceLockService');
  private readonly defaultCallOptions: CallOptions;
  private readonly resolvedFrozen = new WeakMap<LockCallOptions, CallOptions>();
  /** A no-wait attempt, from the store's answer straight to the caller's lease (or miss). */
  private readonly attemptCalls: BoundedCallKind<AcquireOutcome, Attempt, LockRequest> = {
    answered: (outcome, call) => {
      this.calls.backendRecovered();
      const request = call.subject;
      if (!outcome.acquired) {
        // A throw here frees the slot in `failed`.
        if (outcome.limitInUse !== undefined) throw this.limitMismatch(request, outcome.limitInUse);
        const miss: Miss = { skipped: 'lock-held', retryAfterMs: outcome.retryAfterMs };
        this.table.vacate(request.key);
        return miss;
      }
      this.leases.refuseIfClosing(outcome, [request]);
      return this.leases.grant(this.userKey(request.key), request, outcome.fencingToken, call.startedAt);
    },
    // Also for a throw in `answered` (shutting down, an answer that is not one): the slot is freed.
    failed: (call, error, timedOut) => {
      this.table.vacate(call.subject.key);
      return this.calls.callError(call, error, timedOut);
    },
    answeredLate: (outcome, call) => this.leases.giveBack(outcome, [call.subject]),
  };

  constructor(
    private readonly backend: LockBackend,
    private readonly options: ResolvedLockModuleOptions,
    private readonly calls: StoreCalls,
    private readonly table: LocalKeyTable,
    private readonly leases: HeldLeases,
    private readonly gate: ShutdownGate,
    private readonly events: LockEvents,
  ) {
    this.defaultCallOptions = Object.freeze(resolveCallOptions(undefined, options));
  }

  /**
   * Not async, like the public methods of `SpaceLockService`: most attempts are one store call
   * without a wait, and each async frame between the caller and the store cost CPU and garbage
   * per cycle (bench/NOTES.md). Invalid input still rejects, never throws.
   */
  attempt(key: string, given: LockCallOptions | undefined): Promise<Attempt> {
    let options: CallOptions;
    try {
      assertValidKey(key);
      options = this.callOptions(given);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.events.active) return this.attemptValid(key, options);
    const watch = this.events.watch([key], options);
    return watch.follow(this.attemptValid(key, options, watch));
  }

  /** With `watch` (somebody listens to lock events), the same steps, told as they happen. */
  private attemptValid(key: string, options: CallOptions, watch?: AttemptWatch): Promise<Attempt> {
    const storeKey = this.storeKey(key);
    const local = this.table.get(storeKey);
    if (local && !this.table.admits(local, options)) {
      const limitInUse = this.table.limitInUse(local, options.limit);
      if (limitInUse !== null) return Promise.reject(new LockLimitMismatchError(key, options.limit, limitInUse));
      return this.attemptBehindLocalHolder(key, storeKey, local, options, watch);
    }
    this.table.occupy(storeKey, options);
    if (options.waitMs === 0 && !watch) return this.attemptOnce(storeKey, options);
    return this.attemptOccupied(key, storeKey, options, performance.now() + options.waitMs, watch);
  }


  /** One store call, no wait, for a key whose local slot we occupy. */
  private attemptOnce(storeKey: string, options: CallOptions): Promise<Attempt> {
    const request = this.leases.request(storeKey, options);
    return this.calls.follow(this.attemptCalls, 'tryAcquire', request, this.backend.tryAcquire, request);
  }

  private async attemptBehindLocalHolder(key: string, storeKey: string, local: LocalKey, options: CallOptions, watch?: AttemptWatch): Promise<Attempt> {
    const giveUpAt = performance.now() + options.waitMs;
    watch?.contended(options.waitMs > 0);
    const turn = await this.table.waitLocally(local, options, false);
    if (turn instanceof Lease) watch?.handedOver('local');
    if (turn !== 'slot') return turn;
    return this.attemptOccupied(key, storeKey, options, giveUpAt, watch);
  }

  /** Ask the store (waiting until `giveUpAt`) for a key whose local slot we occupy; a miss vacates it. */
  private async attemptOccupied(key: string, storeKey: string, options: CallOptions, giveUpAt: number, watch?: AttemptWatch): Promise<Attempt> {
    try {
      const result = await this.acquireFromStore(key, storeKey, options, giveUpAt, watch);
      if (!(result instanceof Lease)) this.table.vacate(storeKey);
      return result;
    } catch (error) {
      this.table.vacate(storeKey);
      throw error;
    }
  }

  /** Ask the store until it grants the lease or `giveUpAt` passes; woken by releases, not polling. */
  private async acquireFromStore(key: string, storeKey: string, options: CallOptions, giveUpAt: number, watch?: AttemptWatch): Promise<Attempt> {
    // One token for the whole wait, so a backend that queues waiters keeps our place and can
    // pass the lease to us on release.
    const queueToken = options.waitMs > 0 && this.backend.leaveQueue ? newLockToken() : undefined;
    let queued = false;
    try {
      for (;;) {
        const request = this.leases.request(storeKey, options, queueToken);
        // From here we may be queued, even if the answer never reaches us (a timed-out call).
        queued = queueToken !== undefined;
        const sentAt = performance.now();
        const outcome = await this.calls.call('tryAcquire', () => this.backend.tryAcquire(request), (late) => this.leases.giveBack(late, [request]));
        if (outcome.acquired) {
          queued = false;
          this.leases.refuseIfClosing(outcome, [request]);
          return this.leases.grant(key, request, outcome.fencingToken, sentAt);
        }
        if (outcome.limitInUse !== undefined) throw this.limitMismatch(request, outcome.limitInUse);
        watch?.contended(options.waitMs > 0);
        const woken = await this.waitForStore(storeKey, outcome.retryAfterMs, giveUpAt, queueToken);
        // Woken by shutdown: an error, as for local waiters, not a busy miss (a grant passed to us is given back below).
        if (typeof woken === 'string') this.assertOpen();
        if (woken === 'gave-up') return { skipped: 'lock-held', retryAfterMs: outcome.retryAfterMs };
        // Passed to us after our last attempt was sent: the lease runs at least ttl from then.
        // If that was long ago, the next attempt confirms it and measures it afresh.
        if (woken !== 'woken' && performance.now() - sentAt <= options.ttlMs / 3) {
          queued = false;
          this.leases.refuseIfClosing({ acquired: true }, [request]);
          watch?.handedOver('store');
          return this.leases.grant(key, request, woken.fencingToken, sentAt);
        }
      }
    } finally {
      if (queued) this.leaveQueue(storeKey, queueToken as string);
    }
  }

  /** We stopped waiting: give up our place (and a turn given to us). A failure leaves it to expire. */
  private leaveQueue(storeKey: string, token: string): void {
    const leaveQueue = this.backend.leaveQueue?.bind(this.backend) as NonNullable<LockBackend['leaveQueue']>;
    void this.calls.call('leaveQueue', () => leaveQueue(storeKey, token)).catch((error: unknown) =>
      this.logger.debug(`Could not leave the queue of "${storeKey}": ${errorMessage(error)}`),
    );
  }

  /**
   * After a miss: `'gave-up'` when `giveUpAt` has passed (or we are closing), else wait for a
   * release of `storeKey`, at most its holder's remaining lease: `'woken'` to ask again, or
   * the lease itself when the store passed it to the waiter queued with `queueToken`.
   */
  async waitForStore(
    storeKey: string,
    retryAfterMs: number | null,
    giveUpAt: number,
    queueToken?: string,
  ): Promise<'gave-up' | 'woken' | PassedLease> {
    const remaining = giveUpAt - performance.now();
    if (remaining <= 0 || this.gate.closing) return 'gave-up';
    const until = Math.max(1, Math.ceil(Math.min(remaining, retryAfterMs ?? remaining)));
    return (await this.backend.waitForRelease(storeKey, until, this.gate.signal, queueToken)) ?? 'woken';
  }

  /** `LockShuttingDownError` once shutdown began. */
  assertOpen(): void {
    if (this.gate.closing) throw new LockShuttingDownError();
  }

  callOptions(given: LockCallOptions | undefined): CallOptions {
    // Most calls pass no options: validate the defaults once, not per call.
    const options = given === undefined ? this.defaultCallOptions : this.resolve(given);
    if (options.mode === 'shared' && !this.backend.capabilities.shared) {
      throw new LockNotSupportedError(`The ${this.backend.name} backend does not support shared locks`);
    }
    if (options.limit > 1 && !this.backend.capabilities.limit) {
      throw new LockNotSupportedError(
        `The ${this.backend.name} backend does not support semaphores (limit ${options.limit}); use the memory or redis backend, or limit 1`,
      );
    }
    if (this.gate.closing) throw new LockShuttingDownError();
    return options;
  }

  /**
   * Frozen options (a `@WithLock` method's, fixed at decoration and always carrying its `name`)
   * are resolved once each, like the defaults; any other object is checked per call, as a
   * caller may change it between calls.
   */
  private resolve(given: LockCallOptions): CallOptions {
    // `null` and other non-objects are frozen too, but no WeakMap key: checked (or defaulted) as given.
    if (typeof given !== 'object' || given === null || !Object.isFrozen(given)) return resolveCallOptions(given, this.options);
    let resolved = this.resolvedFrozen.get(given);
    if (!resolved) {
      resolved = Object.freeze(resolveCallOptions(given, this.options));
      this.resolvedFrozen.set(given, resolved);
    }
    return resolved;
  }

  /** The store found `request`'s key held with another limit: the caller's error, never waited on. */
  limitMismatch(request: LockRequest, limitInUse: number): LockLimitMismatchError {
    return new LockLimitMismatchError(this.userKey(request.key), request.limit ?? 1, limitInUse);
  }

  /** `LockTimeoutError` after a wait, `LockHeldError` without one. */
  missError(key: string, miss: Miss, given: LockCallOptions | undefined, started: number): LockError {
    if (given?.waitMs) return new LockTimeoutError(key, Math.round(performance.now() - started), miss.retryAfterMs);
    return new LockHeldError(key, miss.retryAfterMs, miss.skipped);
  }

  storeKey(key: string): string {
    return this.options.keyPrefix + key;
  }

  userKey(storeKey: string): string {
    return storeKey.slice(this.options.keyPrefix.length);
  }
}
