import { BeforeApplicationShutdown, Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type {
  AcquireManyResult,
  ForceReleaseOptions,
  HeldLock,
  HeldLockSummary,
  ListLocksOptions,
  LockCallOptions,
  LockSetKey,
  LockInfo,
  LockLostEvent,
  LockWaiters,
  Skipped,
} from './held-lock.interface';
import { HeldLeases } from './held-leases';
import { Lease } from './lease';
import { LeaseLoss } from './lease-loss';
import { LocalKeyTable } from './local-key-table';
import { LockAcquirer } from './lock-acquirer';
import type { Attempt } from './lock-attempt';
import { LockBackend, type ForceReleaseOutcome } from './lock-backend.interface';
import { LOCK_OPTIONS } from './lock.constants';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { LockOperations } from './lock-operations';
import { LockRunner, type LockRunHandlers } from './lock-runner';
import { LockSets } from './lock-sets';
import { ShutdownGate } from './shutdown-gate';
import { StoreCalls } from './store-calls';
import { LeaderElection } from './leader/leader-election';
import type { CampaignOptions, LeaderHandle, LeaderRecord } from './leader/leader.interfaces';
import { LockShuttingDownError } from './lock.errors';
import type { Observable } from 'rxjs';
import type { LockEvent } from './events/lock-event.interface';
import { LockEvents } from './events/lock-events';
import { LockHealth, type LockHealthOptions, type LockHealthReport } from './health/lock-health';
import { LockTelemetry } from './telemetry/lock-telemetry';

/**
 * Run work under a lock: an in-process per-key mutex first, then the backend's lease
 * (memory, file or Redis), kept alive by a heartbeat while the work runs and released in
 * `finally`.
 *
 * The public face: it validates and delegates to its parts (docs/ARCHITECTURE.md), which are
 * built here and never call back into it.
 */
@Injectable()
export class SpaceLockService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  /** Random per module instance: tells our records from other processes' and replicas'. */
  readonly instanceId = randomUUID();
  private readonly gate = new ShutdownGate();
  private readonly table: LocalKeyTable;
  private readonly calls: StoreCalls;
  private readonly loss: LeaseLoss;
  private readonly leases: HeldLeases;
  private readonly acquirer: LockAcquirer;
  private readonly sets: LockSets;
  private readonly runner: LockRunner;
  private readonly operations: LockOperations;
  /** Leader election (lib/leader): candidacies of this instance, on top of the public methods. */
  private readonly elections: LeaderElection;
  private readonly lockEvents: LockEvents;
  private readonly healthChecks: LockHealth;
  /** OpenTelemetry's listener, when the app registered an SDK. */
  private readonly stopTelemetry?: () => void;
  private ready?: Promise<void>;
  /**
   * Every lock event of this module instance (acquired, released, contended, waited,
   * handed-over, missed, failed, lost, heartbeat-failed, reaped). Free while nobody subscribes.
   */
  readonly events: Observable<LockEvent>;

  constructor(
    @Inject(LOCK_OPTIONS) options: ResolvedLockModuleOptions,
    @Inject(LockBackend) private readonly backend: LockBackend,
  ) {
    this.lockEvents = new LockEvents(backend.name);
    this.events = this.lockEvents.stream;
    this.table = new LocalKeyTable(options.maxLocalHandoffs);
    this.calls = new StoreCalls(backend, options);
    this.loss = new LeaseLoss(options.onLockLost, this.lockEvents);
    this.leases = new HeldLeases(backend, options, this.calls, this.table, this.loss, this.gate, this.instanceId, this.lockEvents);
    this.acquirer = new LockAcquirer(backend, options, this.calls, this.table, this.leases, this.gate, this.lockEvents);
    this.sets = new LockSets(backend, options, this.calls, this.table, this.leases, this.acquirer, this.lockEvents);
    this.runner = new LockRunner(this.acquirer, this.sets, this.leases);
    this.operations = new LockOperations(backend, options, this.calls, this.table, this.instanceId, this.lockEvents);
    this.healthChecks = new LockHealth(backend, options, this.calls, this.table, this.loss);
    this.elections = new LeaderElection(this, new Logger('SpaceLockService'));
    this.stopTelemetry = LockTelemetry.attach(this.lockEvents);
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.whenReady();
  }

  /** Resolves once the backend is initialised (at bootstrap). */
  whenReady(): Promise<void> {
    this.ready ??= Promise.resolve(this.backend.init?.());
    return this.ready;
  }

  /**
   * Campaign for leadership of `name` until the handle resigns or the module shuts down: the
   * leader holds the lock `leader:<name>` (its fencing token is the term). Calling it again for
   * a name this instance campaigns for returns the same handle.
   */
  campaign(name: string, options?: CampaignOptions): LeaderHandle {
    if (this.gate.closing) throw new LockShuttingDownError();
    return this.elections.campaign(name, options);
  }

  /** Who leads `name` now (as the store records it), or `null`. */
  leader(name: string): Promise<LeaderRecord | null> {
    return this.elections.leader(name);
  }

  /**
   * Is `lock` still ours by our own count of its lease? A lease whose time ran out without a
   * confirmed heartbeat (a paused process) is lost here, on the spot: its signal aborts before
   * this returns `false`.
   */
  isHeldNow(lock: HeldLock): boolean {
    return lock instanceof Lease && lock.isHeldNow();
  }

  /**
   * Run `fn` holding `key`. Returns `fn`'s result, or `{ skipped: 'in-progress' }` when this
   * process already runs `key`, or `{ skipped: 'lock-held' }` when another holder has it
   * (after waiting `waitMs`, if given). The lease is released in `finally`; a failed release
   * is logged and never replaces `fn`'s result or error.
   */
  withSpaceLock<T>(key: string, fn: (lock: HeldLock) => Promise<T> | T, options?: LockCallOptions): Promise<T | Skipped> {
    return this.runner.run(key, options, (locks) => fn(locks[0]), SKIP) as Promise<T | Skipped>;
  }

  /**
   * All of `keys` or none, taken in sorted order so overlapping sets never deadlock; a key given
   * as `{ key, mode?, limit? }` is taken in its own mode or with its own limit.
   */
  withSpaceLocks<T>(keys: readonly LockSetKey[], fn: (locks: HeldLock[]) => Promise<T> | T, options?: LockCallOptions): Promise<T | Skipped> {
    return this.runner.runSet(keys, options, fn, SKIP) as Promise<T | Skipped>;
  }

  /**
   * The one "run under lock" behind `withSpaceLock(s)` and `@WithLock` (routes, other
   * transports, provider methods): `key` alone, or every key of `keys` (all or none, sorted);
   * `handlers` say what a miss or a failure to lock becomes. For `LockInterceptor` and its
   * subclasses; applications use `withSpaceLock(s)`.
   */
  runUnderLock<T, M>(
    keys: string | readonly LockSetKey[],
    options: LockCallOptions | undefined,
    work: (locks: HeldLock[]) => T | Promise<T>,
    handlers: LockRunHandlers<M>,
  ): Promise<unknown> {
    return typeof keys === 'string' ? this.runner.run(keys, options, work, handlers) : this.runner.runSet(keys, options, work, handlers);
  }

  /** One attempt (or a wait of up to `waitMs`); `null` when the lock stays taken. */
  tryAcquire(key: string, options?: LockCallOptions): Promise<HeldLock | null> {
    return this.acquirer.attempt(key, options).then(leaseOrNull);
  }

  /** Take `key`, waiting up to `waitMs`: `LockHeldError` without a wait, `LockTimeoutError` after one. */
  acquire(key: string, options?: LockCallOptions): Promise<HeldLock> {
    const started = performance.now();
    return this.acquirer.attempt(key, options).then((attempt) => {
      if (attempt instanceof Lease) return attempt;
      throw this.acquirer.missError(key, attempt, options, started);
    });
  }

  /**
   * All of `keys` (sorted, waiting up to `waitMs` in total) or a `LockHeldError` /
   * `LockTimeoutError` naming the first key that stayed taken. Nothing stays held on failure.
   */
  async acquireMany(keys: readonly LockSetKey[], options?: LockCallOptions): Promise<HeldLock[]> {
    const started = performance.now();
    const set = await this.sets.attemptSet(this.sets.members(keys, options));
    if ('leases' in set) return set.leases;
    throw this.acquirer.missError(set.missed[0].key, set.missed[0], options, started);
  }

  /** Release every lock given; failures are logged, never thrown. */
  releaseAll(locks: readonly HeldLock[]): Promise<void> {
    return this.leases.releaseAll(locks);
  }

  /**
   * Try the keys once, without waiting. Without `partial`, all or nothing (as `acquireMany`);
   * with it, every key on its own, keeping what could be taken. `unavailable` names the holder
   * of each key we could not take (without `partial`: the ones found taken before giving up).
   */
  async tryAcquireMany(keys: readonly LockSetKey[], options?: LockCallOptions & { partial?: boolean }): Promise<AcquireManyResult> {
    const { partial, ...callOptions } = options ?? {};
    const members = this.sets.members(keys, { ...callOptions, waitMs: 0 });
    let attempts: [string, Attempt][];
    if (partial) {
      attempts = await this.sets.tryEach(members);
    } else {
      const set = await this.sets.attemptSet(members);
      if ('leases' in set) return { acquired: set.leases, unavailable: [] };
      attempts = set.missed.map((miss): [string, Attempt] => [miss.key, miss]);
    }
    const result: AcquireManyResult = { acquired: [], unavailable: [] };
    for (const [key, attempt] of attempts) {
      if (attempt instanceof Lease) result.acquired.push(attempt);
      else result.unavailable.push({ key, reason: attempt.skipped, holder: await this.inspect(key).catch(() => null) });
    }
    return result;
  }

  /** The holder of `key` (the oldest, for shared locks), or `null` when free. */
  inspect(key: string): Promise<LockInfo | null> {
    return this.operations.inspect(key);
  }

  /** Every holder of `key` (several only in shared mode). */
  inspectAll(key: string): Promise<LockInfo[]> {
    return this.operations.inspectAll(key);
  }

  /** Holders visible to the backend, stale ones marked. */
  list(options?: ListLocksOptions): Promise<LockInfo[]> {
    return this.operations.list(options);
  }

  /** Who waits for `key`: callers queued in the store (any replica; `null` where the backend keeps no queue) and this instance's local waiters. */
  waiters(key: string): Promise<LockWaiters> {
    return this.operations.waiters(key);
  }

  /** Leases this module instance holds now. */
  held(): HeldLockSummary[] {
    return this.operations.held();
  }

  /**
   * An operator's reap. The evicted holder learns at its next heartbeat (its signal aborts);
   * fenced resources reject its writes from now on.
   */
  forceRelease(key: string, options: ForceReleaseOptions): Promise<ForceReleaseOutcome> {
    return this.operations.forceRelease(key, options);
  }

  /** Listen for leases this process loses while holding them. Returns the unsubscribe function. */
  onLockLost(listener: (event: LockLostEvent) => void): () => void {
    return this.loss.listen(listener);
  }

  /** Listen to every lock event (see `events`). Returns the unsubscribe function. */
  onLockEvent(listener: (event: LockEvent) => void): () => void {
    return this.lockEvents.listen(listener);
  }

  /**
   * Does the store answer within `timeoutMs`, are the heartbeats on time, was no lease lost in
   * the last `lossWindowMs`? What `LockHealthIndicator` reports to Terminus.
   */
  health(options?: LockHealthOptions): Promise<LockHealthReport> {
    return this.healthChecks.check(options);
  }

  /** Release everything before other modules (Redis clients) shut down. */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.gate.closing) return;
    // Leaders step down first: their release hands leadership to a follower at once.
    await this.elections.resignAll();
    if (!this.gate.begin()) return;
    this.table.dismissWaiters();
    await this.leases.releaseEverything();
    // Grants still on their way are given back (see `HeldLeases.refuseIfClosing`) before the backend closes.
    await this.calls.idle();
    this.leases.stop();
    this.stopTelemetry?.();
    await this.backend.close?.();
  }
}

/** `withSpaceLock(s)`: a miss is `{ skipped }`, never an error. */
const SKIP: LockRunHandlers<Skipped> = { missed: (miss) => ({ skipped: miss.skipped }) };

function leaseOrNull(attempt: Attempt): HeldLock | null {
  return attempt instanceof Lease ? attempt : null;
}
