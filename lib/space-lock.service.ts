import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type {
  AcquireManyResult,
  ForceReleaseOptions,
  HeldLock,
  HeldLockSummary,
  ListLocksOptions,
  LockCallOptions,
  LockInfo,
  LockLostEvent,
  Skipped,
  SkipReason,
} from './held-lock.interface';
import { BoundedCall, CallDeadlines, type BoundedCallKind } from './call-deadlines';
import { LeaseKeeper, type KeptLease } from './lease-keeper';
import { newLockToken } from './lock-token';
import {
  LockBackend,
  type AcquireAllOutcome,
  type AcquireOutcome,
  type ForceReleaseOutcome,
  type LockMode,
  type LockOwner,
  type LockRecord,
  type LockRequest,
  type PassedLease,
  type ReleaseOutcome,
} from './lock-backend.interface';
import { LOCK_OPTIONS } from './lock.constants';
import {
  LockBackendError,
  LockError,
  LockHeldError,
  LockLostError,
  LockNotSupportedError,
  LockOptionsError,
  LockShuttingDownError,
  LockTimeoutError,
  type LockLostReason,
} from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { assertPrintable, assertValidKey, resolveCallOptions } from './lock-options.validation';
import { errorMessage } from './lock.errors';

type CallOptions = Required<LockCallOptions>;
type LateResultHandler<T = unknown> = (value: T) => void;

interface LeaseHolder {
  extendLease(lease: Lease, ttlMs?: number): Promise<boolean>;
  releaseLease(lease: Lease): Promise<ReleaseOutcome>;
  /** `ensureHeld()` found the local deadline passed before the keeper did. */
  leaseLapsed(lease: Lease): void;
}

/** A lease of this process: what the caller holds and what the keeper keeps alive. */
class Lease implements HeldLock, KeptLease {
  // Created on first use of `signal`: an AbortController per lease was ~20% of an
  // uncontended memory-backend cycle, and most callers never look at the signal.
  private controller?: AbortController;
  private lostReason?: unknown;
  readonly acquiredAt = Date.now();
  state: 'held' | 'lost' | 'released' = 'held';
  nextBeatAt: number;
  deadline: number;
  keeperSlot = -1;
  private releasing?: Promise<ReleaseOutcome>;

  constructor(
    private readonly holder: LeaseHolder,
    readonly key: string,
    /** The grant's request: what the backend knows this lease by (its ttlMs follows `extend`). */
    readonly ref: LockRequest,
    readonly fencingToken: number,
    public heartbeatMs: number,
    sentAt: number,
  ) {
    this.nextBeatAt = sentAt + heartbeatMs;
    this.deadline = LeaseKeeper.deadlineFrom(sentAt, ref.ttlMs);
  }

  /** Key as stored, with `keyPrefix`. */
  get storeKey(): string {
    return this.ref.key;
  }

  get token(): string {
    return this.ref.token;
  }

  get mode(): LockMode {
    return this.ref.mode;
  }

  get ownerId(): string {
    return this.ref.owner.ownerId;
  }

  get ttlMs(): number {
    return this.ref.ttlMs;
  }

  set ttlMs(ttlMs: number) {
    this.ref.ttlMs = ttlMs;
  }

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.lostReason !== undefined) this.controller.abort(this.lostReason);
    }
    return this.controller.signal;
  }

  /** Aborts `signal` now, or at its creation if nobody has asked for it yet. */
  abort(reason: unknown): void {
    this.lostReason = reason;
    this.controller?.abort(reason);
  }

  extend(ttlMs?: number): Promise<boolean> {
    return this.holder.extendLease(this, ttlMs);
  }

  release(): Promise<ReleaseOutcome> {
    this.releasing ??= this.holder.releaseLease(this);
    return this.releasing;
  }

  ensureHeld(): void {
    if (this.state === 'held' && performance.now() < this.deadline) return;
    if (this.state === 'held') this.holder.leaseLapsed(this);
    throw this.lostReason ?? new LockLostError(this.key, this.fencingToken, 'released');
  }
}

/** A caller of this process waiting for a key another local caller has. */
interface LocalWaiter {
  mode: LockMode;
  options: CallOptions;
  /** A lease handed over directly, `'slot'` (the local slot is yours: go ask the store) or `'shutdown'`. */
  grant(turn: LocalTurn): void;
  /** A lock set's waiter: takes the slot and asks the store for the whole set itself, never a handed lease. */
  slotOnly: boolean;
}

type LocalTurn = Lease | 'slot' | 'shutdown';

/** What this process does with one key right now. */
interface LocalKey {
  mode: LockMode;
  /** Leases held plus attempts in flight. */
  occupants: number;
  /** This process's leases on the key (one, or several shared): a list, as it is that short. */
  leases: Lease[];
  waiters: LocalWaiter[];
  consecutiveHandoffs: number;
}

interface Miss {
  skipped: SkipReason;
  retryAfterMs: number | null;
}

type Attempt = Lease | Miss;

/** A lock set: every lease, or the keys (without `keyPrefix`) that stayed taken, first first, and nothing held. */
type SetAttempt = { leases: Lease[] } | { missed: (Miss & { key: string })[] };

/**
 * Run work under a lock: an in-process per-key mutex first, then the backend's lease
 * (memory, file or Redis), kept alive by a heartbeat while the work runs and released in
 * `finally`.
 */
@Injectable()
export class SpaceLockService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(SpaceLockService.name);
  /** Random per module instance: tells our records from other processes' and replicas'. */
  readonly instanceId = randomUUID();
  private readonly local = new Map<string, LocalKey>();
  private readonly lostListeners = new Set<(event: LockLostEvent) => void>();
  private readonly keeper: LeaseKeeper;
  private backendFailing = false;
  private readonly deadlines: CallDeadlines;
  private readonly defaultCallOptions: CallOptions;
  private readonly defaultOwner: LockOwner;
  private readonly shutdown = new AbortController();
  private readonly leaseHolder: LeaseHolder = {
    extendLease: (lease, ttlMs) => this.extendLease(lease, ttlMs),
    releaseLease: (lease) => this.releaseLease(lease),
    leaseLapsed: (lease) => this.lose(lease, 'lease-timed-out'),
  };
  private closing = false;
  /** Store calls whose caller takes the answer as it is; the subject is what to do with a late answer. */
  private readonly plainCalls: BoundedCallKind<unknown, unknown, LateResultHandler | undefined> = {
    answered: (value) => {
      this.backendRecovered();
      return value;
    },
    failed: (call, error, timedOut) => this.callError(call, error, timedOut),
    answeredLate: (value, call) => call.subject?.(value),
  };
  /** A no-wait attempt, from the store's answer straight to the caller's lease (or miss). */
  private readonly attemptCalls: BoundedCallKind<AcquireOutcome, Attempt, LockRequest> = {
    answered: (outcome, call) => {
      this.backendRecovered();
      const request = call.subject;
      if (!outcome.acquired) {
        const miss: Miss = { skipped: 'lock-held', retryAfterMs: outcome.retryAfterMs };
        this.vacate(request.key);
        return miss;
      }
      this.refuseIfClosing(outcome, [request]);
      return this.grant(this.userKey(request.key), request, outcome.fencingToken, call.startedAt);
    },
    // Also for a throw in `answered` (shutting down, an answer that is not one): the slot is freed.
    failed: (call, error, timedOut) => {
      this.vacate(call.subject.key);
      return this.callError(call, error, timedOut);
    },
    answeredLate: (outcome, call) => this.giveBack(outcome, [call.subject]),
  };
  /** A release to the store: the local slot is vacated once the store answered. */
  private readonly releaseCalls: BoundedCallKind<ReleaseOutcome, ReleaseOutcome, Lease> = {
    answered: (outcome, call) => {
      this.backendRecovered();
      this.vacate(call.subject.storeKey);
      return outcome;
    },
    failed: (call, error, timedOut) => {
      this.vacate(call.subject.storeKey);
      return this.callError(call, error, timedOut);
    },
  };

  constructor(
    @Inject(LOCK_OPTIONS) private readonly options: ResolvedLockModuleOptions,
    @Inject(LockBackend) private readonly backend: LockBackend,
  ) {
    this.deadlines = new CallDeadlines(options.backendTimeoutMs);
    this.defaultCallOptions = Object.freeze(resolveCallOptions(undefined, options));
    this.defaultOwner = Object.freeze({ ownerId: options.ownerId, instanceId: this.instanceId, hostname: HOSTNAME, pid: process.pid });
    this.keeper = new LeaseKeeper({
      extend: (batch) => this.call('extend', () => this.backend.extend(batch.map((lease) => (lease as Lease).ref))),
      lost: (lease, reason) => this.lose(lease as Lease, reason),
      extendFailed: (error, size) => this.noteBackendFailure(`heartbeat of ${size} lease(s)`, error),
    });
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.backend.init?.();
  }

  /**
   * Run `fn` holding `key`. Returns `fn`'s result, or `{ skipped: 'in-progress' }` when this
   * process already runs `key`, or `{ skipped: 'lock-held' }` when another holder has it
   * (after waiting `waitMs`, if given). The lease is released in `finally`; a failed release
   * is logged and never replaces `fn`'s result or error.
   */
  async withSpaceLock<T>(
    key: string,
    fn: (lock: HeldLock) => Promise<T> | T,
    options?: LockCallOptions,
  ): Promise<T | Skipped> {
    const attempt = await this.attempt(key, options);
    if (!(attempt instanceof Lease)) return { skipped: attempt.skipped };
    try {
      return await fn(attempt);
    } finally {
      await this.releaseQuietly(attempt);
    }
  }

  /** All of `keys` or none, taken in sorted order so overlapping sets never deadlock. */
  async withSpaceLocks<T>(
    keys: readonly string[],
    fn: (locks: HeldLock[]) => Promise<T> | T,
    options?: LockCallOptions,
  ): Promise<T | Skipped> {
    const set = await this.attemptSet(this.sortedKeys(keys), options);
    if ('missed' in set) return { skipped: set.missed[0].skipped };
    try {
      return await fn([...set.leases]);
    } finally {
      await this.releaseAll(set.leases);
    }
  }

  /** One attempt (or a wait of up to `waitMs`); `null` when the lock stays taken. */
  tryAcquire(key: string, options?: LockCallOptions): Promise<HeldLock | null> {
    return this.attempt(key, options).then(leaseOrNull);
  }

  /** Take `key`, waiting up to `waitMs`: `LockHeldError` without a wait, `LockTimeoutError` after one. */
  acquire(key: string, options?: LockCallOptions): Promise<HeldLock> {
    const started = performance.now();
    return this.attempt(key, options).then((attempt) => {
      if (attempt instanceof Lease) return attempt;
      throw this.missError(key, attempt, options, started);
    });
  }

  /**
   * All of `keys` (sorted, waiting up to `waitMs` in total) or a `LockHeldError` /
   * `LockTimeoutError` naming the first key that stayed taken. Nothing stays held on failure.
   */
  async acquireMany(keys: readonly string[], options?: LockCallOptions): Promise<HeldLock[]> {
    const started = performance.now();
    const set = await this.attemptSet(this.sortedKeys(keys), options);
    if ('leases' in set) return set.leases;
    throw this.missError(set.missed[0].key, set.missed[0], options, started);
  }

  /** Release every lock given; failures are logged, never thrown. */
  async releaseAll(locks: readonly HeldLock[]): Promise<void> {
    if (locks.length === 1) return locks[0].release().then(noop, (error: unknown) => this.releaseFailed(locks[0], error));
    await Promise.all(
      [...locks].reverse().map((lock) => lock.release().then(noop, (error: unknown) => this.releaseFailed(lock, error))),
    );
  }

  /**
   * Try the keys once, without waiting. Without `partial`, all or nothing (as `acquireMany`);
   * with it, every key on its own, keeping what could be taken. `unavailable` names the holder
   * of each key we could not take (without `partial`: the ones found taken before giving up).
   */
  async tryAcquireMany(
    keys: readonly string[],
    options?: LockCallOptions & { partial?: boolean },
  ): Promise<AcquireManyResult> {
    const sorted = this.sortedKeys(keys);
    const attempts: [string, Attempt][] = [];
    if (options?.partial) {
      try {
        for (const key of sorted) attempts.push([key, await this.attempt(key, { ...options, waitMs: 0 })]);
      } catch (error) {
        await this.releaseAll(attempts.flatMap(([, attempt]) => (attempt instanceof Lease ? [attempt] : [])));
        throw error;
      }
    } else {
      const set = await this.attemptSet(sorted, { ...options, waitMs: 0 });
      if ('leases' in set) return { acquired: set.leases, unavailable: [] };
      attempts.push(...set.missed.map((miss): [string, Attempt] => [miss.key, miss]));
    }
    const result: AcquireManyResult = { acquired: [], unavailable: [] };
    for (const [key, attempt] of attempts) {
      if (attempt instanceof Lease) result.acquired.push(attempt);
      else result.unavailable.push({ key, reason: attempt.skipped, holder: await this.inspect(key).catch(() => null) });
    }
    return result;
  }

  /** The holder of `key` (the oldest, for shared locks), or `null` when free. */
  async inspect(key: string): Promise<LockInfo | null> {
    return (await this.inspectAll(key))[0] ?? null;
  }

  /** Every holder of `key` (several only in shared mode). */
  async inspectAll(key: string): Promise<LockInfo[]> {
    assertValidKey(key);
    const records = await this.call('inspect', () => this.backend.inspect(this.storeKey(key)));
    return records.map((record) => this.toInfo(record, records.length));
  }

  /** Holders visible to the backend, stale ones marked. */
  async list(options: ListLocksOptions = {}): Promise<LockInfo[]> {
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 1_000;
    if (typeof prefix !== 'string') throw new LockOptionsError('list prefix must be a string');
    if (!Number.isInteger(limit) || limit < 1) throw new LockOptionsError('list limit must be a positive integer');
    const records = await this.call('list', () =>
      this.backend.list({ prefix: this.options.keyPrefix + prefix, limit }),
    );
    const perKey = new Map<string, number>();
    for (const record of records) perKey.set(record.key, (perKey.get(record.key) ?? 0) + 1);
    return records
      .filter((record) => record.key.startsWith(this.options.keyPrefix))
      .map((record) => this.toInfo(record, perKey.get(record.key) ?? 1));
  }

  /** Leases this module instance holds now. */
  held(): HeldLockSummary[] {
    const summaries: HeldLockSummary[] = [];
    for (const state of this.local.values()) {
      for (const lease of state.leases) {
        if (lease.state !== 'held') continue;
        const { key, token, fencingToken, mode, ownerId, acquiredAt } = lease;
        summaries.push({ key, token, fencingToken, mode, ownerId, acquiredAt });
      }
    }
    return summaries;
  }

  /**
   * An operator's reap. The evicted holder learns at its next heartbeat (its signal aborts);
   * fenced resources reject its writes from now on.
   */
  async forceRelease(key: string, options: ForceReleaseOptions): Promise<ForceReleaseOutcome> {
    assertValidKey(key);
    if (typeof options?.reason !== 'string' || options.reason.trim() === '') {
      throw new LockOptionsError('forceRelease needs a non-empty reason');
    }
    // Both end up in the log line: keep them to one printable line.
    assertPrintable('forceRelease reason', options.reason);
    if (options.caller !== undefined) assertPrintable('forceRelease caller', options.caller);
    const caller = options.caller ?? this.options.ownerId;
    const outcome = await this.call('forceRelease', () =>
      this.backend.forceRelease({
        key: this.storeKey(key),
        reason: options.reason,
        expectFencingToken: options.expectFencingToken,
      }),
    );
    this.logger.warn(
      `forceRelease "${key}" by ${caller} (reason: ${options.reason}): ${outcome.outcome}` +
        ('previous' in outcome && outcome.previous
          ? ` (was ${outcome.previous.ownerId}, pid ${outcome.previous.pid}, fencing token ${outcome.previous.fencingToken})`
          : ''),
    );
    return outcome;
  }

  /** Listen for leases this process loses while holding them. Returns the unsubscribe function. */
  onLockLost(listener: (event: LockLostEvent) => void): () => void {
    this.lostListeners.add(listener);
    return () => this.lostListeners.delete(listener);
  }

  /** Release everything before other modules (Redis clients) shut down. */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.shutdown.abort();
    const leases = [...this.local.values()].flatMap((state) => state.leases);
    for (const state of this.local.values()) state.waiters.splice(0).forEach((waiter) => waiter.grant('shutdown'));
    await Promise.all(
      leases.map((lease) => {
        this.lose(lease, 'shutdown');
        return this.releaseQuietly(lease);
      }),
    );
    // Grants still on their way are given back (see `refuseIfClosing`) before the backend closes.
    await this.deadlines.idle();
    this.keeper.stop();
    await this.backend.close?.();
  }

  // --- acquiring -------------------------------------------------------------------

  /**
   * Not async, like the public methods above it: most attempts are one store call without a
   * wait, and each async frame between the caller and the store cost CPU and garbage per cycle
   * (bench/NOTES.md). Invalid input still rejects, never throws.
   */
  private attempt(key: string, given: LockCallOptions | undefined): Promise<Attempt> {
    let options: CallOptions;
    try {
      assertValidKey(key);
      options = this.callOptions(given);
    } catch (error) {
      return Promise.reject(error);
    }
    const storeKey = this.storeKey(key);
    const local = this.local.get(storeKey);
    if (local && !this.admits(local, options.mode)) return this.attemptBehindLocalHolder(key, storeKey, local, options);
    this.occupy(storeKey, options.mode);
    if (options.waitMs === 0) return this.attemptOnce(storeKey, options);
    return this.attemptOccupied(key, storeKey, options, performance.now() + options.waitMs);
  }

  /** One store call, no wait, for a key whose local slot we occupy. */
  private attemptOnce(storeKey: string, options: CallOptions): Promise<Attempt> {
    const request = this.request(storeKey, options);
    const call = new BoundedCall(this.attemptCalls, 'tryAcquire', request);
    return call.follow(invoke(this.backend.tryAcquire, this.backend, request), this.callDeadlines);
  }

  private async attemptBehindLocalHolder(key: string, storeKey: string, local: LocalKey, options: CallOptions): Promise<Attempt> {
    const giveUpAt = performance.now() + options.waitMs;
    const turn = await this.waitLocally(local, options, false);
    if (turn !== 'slot') return turn;
    return this.attemptOccupied(key, storeKey, options, giveUpAt);
  }

  /** Ask the store (waiting until `giveUpAt`) for a key whose local slot we occupy; a miss vacates it. */
  private async attemptOccupied(key: string, storeKey: string, options: CallOptions, giveUpAt: number): Promise<Attempt> {
    try {
      const result = await this.acquireFromStore(key, storeKey, options, giveUpAt);
      if (!(result instanceof Lease)) this.vacate(storeKey);
      return result;
    } catch (error) {
      this.vacate(storeKey);
      throw error;
    }
  }

  /**
   * All of `keys` (sorted, unique) or none, waiting up to `waitMs` in total. With a backend
   * that takes sets at once (`tryAcquireAll`): this process's slots first, in sorted order,
   * then one store call for the whole set, asked again as keys are released. Otherwise key by
   * key, in sorted order, holding the earlier keys while waiting for a later one.
   */
  private async attemptSet(keys: readonly string[], given: LockCallOptions | undefined): Promise<SetAttempt> {
    if (!this.backend.tryAcquireAll || keys.length === 1) return this.attemptEach(keys, given);
    const options = this.callOptions(given);
    const giveUpAt = performance.now() + options.waitMs;
    const storeKeys = keys.map((key) => this.storeKey(key));
    const occupied: string[] = [];
    try {
      for (const [index, storeKey] of storeKeys.entries()) {
        const local = this.local.get(storeKey);
        if (local && !this.admits(local, options.mode)) {
          const waitMs = Math.max(0, Math.ceil(giveUpAt - performance.now()));
          const turn = await this.waitLocally(local, { ...options, waitMs }, true);
          // A set waiter is never handed a lease: `turn` is the slot or a miss.
          if (turn !== 'slot') {
            this.vacateAll(occupied);
            return { missed: [{ key: keys[index], ...(turn as Miss) }] };
          }
        } else {
          this.occupy(storeKey, options.mode);
        }
        occupied.push(storeKey);
      }
      for (;;) {
        const requests = storeKeys.map((storeKey) => this.request(storeKey, options));
        const sentAt = performance.now();
        const outcome = await this.askStoreForSet(requests);
        if (outcome.acquired) {
          this.refuseIfClosing(outcome, requests);
          return { leases: requests.map((request, index) => this.grant(keys[index], request, outcome.fencingTokens[index], sentAt)) };
        }
        const [first] = outcome.held;
        if ((await this.waitForStore(first.key, first.retryAfterMs, giveUpAt)) === 'gave-up') {
          this.vacateAll(occupied);
          const prefix = this.options.keyPrefix.length;
          return { missed: outcome.held.map(({ key, retryAfterMs }) => ({ key: key.slice(prefix), skipped: 'lock-held', retryAfterMs })) };
        }
      }
    } catch (error) {
      this.vacateAll(occupied);
      throw error;
    }
  }

  /** Give back the local slots of a set that could not be taken. */
  private vacateAll(occupied: string[]): void {
    occupied.splice(0).forEach((storeKey) => this.vacate(storeKey));
  }

  /** `attemptSet` for backends without `tryAcquireAll`. */
  private async attemptEach(keys: readonly string[], given: LockCallOptions | undefined): Promise<SetAttempt> {
    const waitMs = resolveCallOptions(given, this.options).waitMs;
    const giveUpAt = performance.now() + waitMs;
    const leases: Lease[] = [];
    try {
      for (const key of keys) {
        const remaining = Math.max(0, Math.floor(giveUpAt - performance.now()));
        const attempt = await this.attempt(key, { ...given, waitMs: Math.min(waitMs, remaining) });
        if (!(attempt instanceof Lease)) {
          await this.releaseAll(leases);
          return { missed: [{ key, ...attempt }] };
        }
        leases.push(attempt);
      }
      return { leases };
    } catch (error) {
      await this.releaseAll(leases);
      throw error;
    }
  }

  /**
   * Wait up to `waitMs` behind this process's own holder of a key: `'slot'` when it is ours,
   * a lease the holder handed straight over (never to `slotOnly` waiters), or a miss.
   */
  private async waitLocally(local: LocalKey, options: CallOptions, slotOnly: boolean): Promise<'slot' | Attempt> {
    if (options.waitMs === 0) return { skipped: 'in-progress', retryAfterMs: this.localRetryAfter(local) };
    const turn = await this.queueLocally(local, options, slotOnly);
    if (turn === 'timeout') return { skipped: 'in-progress', retryAfterMs: this.localRetryAfter(local) };
    if (turn === 'shutdown') throw new LockShuttingDownError();
    return turn;
  }

  /** Ask the store until it grants the lease or `giveUpAt` passes; woken by releases, not polling. */
  private async acquireFromStore(key: string, storeKey: string, options: CallOptions, giveUpAt: number): Promise<Attempt> {
    // One token for the whole wait, so a backend that queues waiters keeps our place and can
    // pass the lease to us on release.
    const queueToken = options.waitMs > 0 && this.backend.leaveQueue ? newLockToken() : undefined;
    let queued = false;
    try {
      for (;;) {
        const request = this.request(storeKey, options, queueToken);
        // From here we may be queued, even if the answer never reaches us (a timed-out call).
        queued = queueToken !== undefined;
        const sentAt = performance.now();
        const outcome = await this.call('tryAcquire', () => this.backend.tryAcquire(request), (late) => this.giveBack(late, [request]));
        if (outcome.acquired) {
          queued = false;
          this.refuseIfClosing(outcome, [request]);
          return this.grant(key, request, outcome.fencingToken, sentAt);
        }
        const woken = await this.waitForStore(storeKey, outcome.retryAfterMs, giveUpAt, queueToken);
        if (woken === 'gave-up') return { skipped: 'lock-held', retryAfterMs: outcome.retryAfterMs };
        // Passed to us after our last attempt was sent: the lease runs at least ttl from then.
        // If that was long ago, the next attempt confirms it and measures it afresh.
        if (woken !== 'woken' && performance.now() - sentAt <= options.ttlMs / 3) {
          queued = false;
          this.refuseIfClosing({ acquired: true }, [request]);
          return this.grant(key, request, woken.fencingToken, sentAt);
        }
      }
    } finally {
      if (queued) this.leaveQueue(storeKey, queueToken as string);
    }
  }

  /** We stopped waiting: give up our place (and a turn given to us). A failure leaves it to expire. */
  private leaveQueue(storeKey: string, token: string): void {
    const leaveQueue = this.backend.leaveQueue?.bind(this.backend) as NonNullable<LockBackend['leaveQueue']>;
    void this.call('leaveQueue', () => leaveQueue(storeKey, token)).catch((error: unknown) =>
      this.logger.debug(`Could not leave the queue of "${storeKey}": ${errorMessage(error)}`),
    );
  }

  /** A grant that arrives after shutdown began is given back at once, never handed to the caller. */
  private refuseIfClosing(grant: { acquired: boolean }, requests: readonly LockRequest[]): void {
    if (!this.closing) return;
    this.giveBack(grant, requests);
    throw new LockShuttingDownError();
  }

  /** One `tryAcquireAll` call for a whole set. */
  private askStoreForSet(requests: readonly LockRequest[]): Promise<AcquireAllOutcome> {
    const tryAcquireAll = this.backend.tryAcquireAll?.bind(this.backend) as NonNullable<LockBackend['tryAcquireAll']>;
    return this.call('tryAcquireAll', () => tryAcquireAll(requests), (late) => this.giveBack(late, requests));
  }

  /** The store granted leases nobody will hold (we stopped waiting, or are closing): give them back. */
  private giveBack(grant: { acquired: boolean }, requests: readonly LockRequest[]): void {
    if (!grant.acquired) return;
    for (const request of requests) void this.call('release', () => this.backend.release(request)).catch(() => undefined);
  }

  /**
   * After a miss: `'gave-up'` when `giveUpAt` has passed (or we are closing), else wait for a
   * release of `storeKey`, at most its holder's remaining lease: `'woken'` to ask again, or
   * the lease itself when the store passed it to the waiter queued with `queueToken`.
   */
  private async waitForStore(
    storeKey: string,
    retryAfterMs: number | null,
    giveUpAt: number,
    queueToken?: string,
  ): Promise<'gave-up' | 'woken' | PassedLease> {
    const remaining = giveUpAt - performance.now();
    if (remaining <= 0 || this.closing) return 'gave-up';
    const until = Math.max(1, Math.ceil(Math.min(remaining, retryAfterMs ?? remaining)));
    return (await this.backend.waitForRelease(storeKey, until, this.shutdown.signal, queueToken)) ?? 'woken';
  }

  private callOptions(given: LockCallOptions | undefined): CallOptions {
    // Most calls pass no options: validate the defaults once, not per call.
    const options = given === undefined ? this.defaultCallOptions : resolveCallOptions(given, this.options);
    if (options.mode === 'shared' && !this.backend.capabilities.shared) {
      throw new LockNotSupportedError(`The ${this.backend.name} backend does not support shared locks`);
    }
    if (this.closing) throw new LockShuttingDownError();
    return options;
  }

  /** `LockTimeoutError` after a wait, `LockHeldError` without one. */
  private missError(key: string, miss: Miss, given: LockCallOptions | undefined, started: number): LockError {
    if (given?.waitMs) return new LockTimeoutError(key, Math.round(performance.now() - started), miss.retryAfterMs);
    return new LockHeldError(key, miss.retryAfterMs, miss.skipped);
  }

  private grant(key: string, request: LockRequest, fencingToken: number, sentAt: number): Lease {
    const heartbeatMs = this.heartbeatFor(request.ttlMs);
    // The request object is the lease's backend reference from now on: nothing else keeps it.
    const lease = new Lease(this.leaseHolder, key, request, fencingToken, heartbeatMs, sentAt);
    const local = this.local.get(request.key);
    // A one-element literal: the first push onto an empty list would reserve room for 17.
    if (local) {
      if (local.leases.length === 0) local.leases = [lease];
      else local.leases.push(lease);
    }
    this.keeper.add(lease);
    return lease;
  }

  /** The module's heartbeat, or a third of a shorter per-call lease. */
  private heartbeatFor(ttlMs: number): number {
    return Math.max(1, Math.min(this.options.heartbeatMs, Math.floor(ttlMs / 3)));
  }

  private request(storeKey: string, options: CallOptions, queueToken?: string): LockRequest {
    const request: LockRequest = {
      key: storeKey,
      token: queueToken ?? newLockToken(),
      ttlMs: options.ttlMs,
      mode: options.mode,
      owner: this.owner(options.ownerId),
    };
    if (queueToken) request.queue = { waitMs: options.waitMs };
    return request;
  }

  private owner(ownerId: string): LockOwner {
    if (ownerId === this.defaultOwner.ownerId) return this.defaultOwner;
    return { ...this.defaultOwner, ownerId };
  }

  // --- the in-process mutex ----------------------------------------------------------

  private admits(local: LocalKey, mode: LockMode): boolean {
    return local.occupants === 0 || (mode === 'shared' && local.mode === 'shared' && local.waiters.length === 0);
  }

  private occupy(storeKey: string, mode: LockMode): void {
    const local = this.local.get(storeKey);
    if (local) {
      local.occupants += 1;
      local.mode = mode;
      return;
    }
    this.local.set(storeKey, { mode, occupants: 1, leases: [], waiters: [], consecutiveHandoffs: 0 });
  }

  /** One occupant left; let the next local waiter in, or forget the key. */
  private vacate(storeKey: string): void {
    const local = this.local.get(storeKey);
    if (!local) return;
    local.occupants -= 1;
    if (local.occupants > 0) return;
    const next = local.waiters.shift();
    if (!next) {
      this.local.delete(storeKey);
      return;
    }
    // Readers queued behind a writer go in together, as they would have without the writer.
    const admitted = [next];
    while (next.mode === 'shared' && local.waiters[0]?.mode === 'shared') admitted.push(local.waiters.shift() as LocalWaiter);
    local.occupants = admitted.length;
    local.mode = next.mode;
    for (const waiter of admitted) waiter.grant('slot');
  }

  /** Wait behind this process's own holder for a turn, or `'timeout'` after `waitMs`. */
  private queueLocally(local: LocalKey, options: CallOptions, slotOnly: boolean): Promise<LocalTurn | 'timeout'> {
    return new Promise((resolve) => {
      const waiter: LocalWaiter = {
        mode: options.mode,
        options,
        slotOnly,
        grant: (turn) => {
          clearTimeout(timer);
          resolve(turn);
        },
      };
      const timer = setTimeout(() => {
        removeFrom(local.waiters, waiter);
        resolve('timeout');
      }, options.waitMs);
      // Left ref'd on purpose: a caller is awaiting this bounded wait, and a script whose only
      // work is that wait must not exit in the middle of it.
      local.waiters.push(waiter);
    });
  }

  private localRetryAfter(local: LocalKey): number | null {
    let latest: number | null = null;
    for (const lease of local.leases) latest = Math.max(latest ?? 0, lease.deadline - performance.now());
    return latest === null ? null : Math.max(0, Math.ceil(latest));
  }

  // --- holding ---------------------------------------------------------------------------

  private async extendLease(lease: Lease, ttlMs?: number): Promise<boolean> {
    if (lease.state !== 'held') return false;
    if (ttlMs !== undefined) {
      resolveCallOptions({ ttlMs }, this.options);
      lease.ttlMs = ttlMs;
      lease.heartbeatMs = this.heartbeatFor(ttlMs);
    }
    const sentAt = performance.now();
    const [stillOurs] = await this.call('extend', () => this.backend.extend([lease.ref]));
    if (stillOurs === null) throw new LockBackendError(this.backend.name, 'extend: the store could not say');
    if (stillOurs) this.keeper.confirmed(lease, sentAt);
    else this.lose(lease, 'taken-over');
    return Boolean(stillOurs);
  }

  /** Not async on the common path (nobody of ours waiting), for the reason given at `attempt`. */
  private releaseLease(lease: Lease): Promise<ReleaseOutcome> {
    const wasHeld = lease.state === 'held';
    if (lease.state !== 'lost') lease.state = 'released';
    this.keeper.delete(lease);
    const local = this.local.get(lease.storeKey);
    if (local) removeFrom(local.leases, lease);
    if (wasHeld && local && local.waiters.length > 0) return this.releaseToLocalWaiter(lease, local);
    return this.releaseToStore(lease);
  }

  private releaseToStore(lease: Lease): Promise<ReleaseOutcome> {
    const call = new BoundedCall(this.releaseCalls, 'release', lease);
    return call.follow(invoke(this.backend.release, this.backend, lease.ref), this.callDeadlines);
  }

  private async releaseToLocalWaiter(lease: Lease, local: LocalKey): Promise<ReleaseOutcome> {
    // A hand-over that failed in any way leaves a plain release to do.
    if (!(await this.handOverLocally(lease, local).catch(() => false))) return this.releaseToStore(lease);
    this.vacate(lease.storeKey);
    return 'released';
  }

  /**
   * Pass an exclusive lease straight to the next waiter of this process: one atomic store
   * call (fresh token and fencing token) instead of a release and an acquire. Capped so other
   * processes get their turn.
   */
  private async handOverLocally(lease: Lease, local: LocalKey): Promise<boolean> {
    const next = local.waiters[0];
    const handOver = this.backend.handOver?.bind(this.backend);
    if (!next || next.slotOnly || !handOver || lease.mode !== 'exclusive' || next.mode !== 'exclusive' || this.closing) return false;
    if (local.consecutiveHandoffs >= this.options.maxLocalHandoffs) {
      local.consecutiveHandoffs = 0;
      return false;
    }
    const request = this.request(lease.storeKey, next.options);
    const sentAt = performance.now();
    const handed = await this.call(
      'handOver',
      () => handOver(lease.ref, request),
      (late) => this.giveBack({ acquired: late !== null }, [request]),
    ).catch(() => null);
    if (!handed) return false;
    if (local.waiters[0] !== next) {
      // The waiter gave up while the store was answering: the new grant is nobody's.
      this.giveBack({ acquired: true }, [request]);
      return true;
    }
    local.waiters.shift();
    local.consecutiveHandoffs += 1;
    local.occupants += 1; // the waiter's occupancy; ours is vacated by the caller
    next.grant(this.grant(lease.key, request, handed.fencingToken, sentAt));
    return true;
  }

  private releaseQuietly(lease: Lease): Promise<void> {
    return lease.release().then(noop, (error: unknown) => this.releaseFailed(lease, error));
  }

  private releaseFailed(lock: HeldLock, error: unknown): void {
    this.logger.warn(`Could not release lock "${lock.key}": ${errorMessage(error)}; it expires with its lease`);
  }

  private lose(lease: Lease, reason: LockLostReason): void {
    if (lease.state !== 'held') return;
    lease.state = 'lost';
    this.keeper.delete(lease);
    const error = new LockLostError(lease.key, lease.fencingToken, reason);
    lease.abort(error);
    if (reason !== 'shutdown') this.logger.warn(error.message);
    const event: LockLostEvent = { key: lease.key, fencingToken: lease.fencingToken, reason };
    for (const listener of [...this.lostListeners, ...(this.options.onLockLost ? [this.options.onLockLost] : [])]) {
      try {
        listener(event);
      } catch (listenerError) {
        this.logger.error(`onLockLost listener threw: ${errorMessage(listenerError)}`);
      }
    }
  }

  // --- the store -----------------------------------------------------------------------

  /**
   * Every backend call goes through here: bounded in time, and any failure that is not one of
   * ours becomes a `LockBackendError` so callers can tell "store down" from "busy".
   */
  private call<T>(operation: string, run: () => Promise<T>, onLateResult?: LateResultHandler<T>): Promise<T> {
    const kind = this.plainCalls as BoundedCallKind<T, T, LateResultHandler<T> | undefined>;
    return new BoundedCall(kind, operation, onLateResult).follow(invoke(run, undefined, undefined), this.callDeadlines);
  }

  /** Calls to a store in this process are not bounded: nothing on a wire to wait for, and a timer would cost more than the call. */
  private get callDeadlines(): CallDeadlines | null {
    return this.backend.capabilities.inProcess ? null : this.deadlines;
  }

  /** A timeout, or any failure that is not one of ours, as a `LockBackendError`. */
  private callError(call: { operation: string }, error: unknown, timedOut: boolean): LockError {
    if (timedOut) return new LockBackendError(this.backend.name, `${call.operation} timed out after ${this.options.backendTimeoutMs} ms`);
    return this.asLockError(call.operation, error);
  }

  private asLockError(operation: string, error: unknown): LockError {
    return error instanceof LockError ? error : new LockBackendError(this.backend.name, `${operation}: ${errorMessage(error)}`, error);
  }

  private noteBackendFailure(what: string, error: unknown): void {
    if (this.backendFailing) return;
    this.backendFailing = true;
    this.logger.warn(`Lock backend "${this.backend.name}" failed during ${what}: ${errorMessage(error)}; leases count down locally`);
  }

  private backendRecovered(): void {
    if (!this.backendFailing) return;
    this.backendFailing = false;
    this.logger.log(`Lock backend "${this.backend.name}" answers again`);
  }

  private storeKey(key: string): string {
    return this.options.keyPrefix + key;
  }

  private userKey(storeKey: string): string {
    return storeKey.slice(this.options.keyPrefix.length);
  }

  private sortedKeys(keys: readonly string[]): string[] {
    if (!Array.isArray(keys) || keys.length === 0) throw new LockOptionsError('keys must be a non-empty array');
    keys.forEach((key) => assertValidKey(key));
    return [...new Set(keys)].sort();
  }

  private toInfo(record: LockRecord, holderCount: number): LockInfo {
    return {
      ...record,
      key: record.key.slice(this.options.keyPrefix.length),
      ageMs: Math.max(0, Date.now() - record.acquiredAt),
      local: record.instanceId === this.instanceId,
      holderCount,
    };
  }
}

const HOSTNAME = hostname();

function noop(): void {}

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

function leaseOrNull(attempt: Attempt): HeldLock | null {
  return attempt instanceof Lease ? attempt : null;
}

function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}
