import { Logger } from '@nestjs/common';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { BoundedCallKind } from './call-deadlines';
import type { HeldLock } from './held-lock.interface';
import { Lease, type LeaseHolder } from './lease';
import { LeaseKeeper } from './lease-keeper';
import type { LeaseLoss } from './lease-loss';
import type { LocalKey, LocalKeyTable } from './local-key-table';
import type { CallOptions } from './lock-attempt';
import type { LockBackend, LockOwner, LockRequest, ReleaseOutcome } from './lock-backend.interface';
import { errorMessage, LockBackendError, LockShuttingDownError, type LockLostReason } from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { resolveCallOptions } from './lock-options.validation';
import { newLockToken } from './lock-token';
import type { ShutdownGate } from './shutdown-gate';
import type { StoreCalls } from './store-calls';
import type { LockEvents } from './events/lock-events';
import { DEFAULT_LOCK_NAME } from './events/lock-event.interface';

/**
 * The leases this process holds, from grant to end: each granted lease is entered in the key
 * table and the keeper (heartbeat); `extend` and `release` of a lease come here; a release
 * hands an exclusive lease straight to the next local waiter when the backend can; grants
 * nobody will hold are given back.
 */
export class HeldLeases implements LeaseHolder {
  private readonly logger = new Logger('SpaceLockService');
  private readonly keeper: LeaseKeeper;
  private readonly defaultOwner: LockOwner;
  /** A release to the store: the local slot is vacated once the store answered. */
  private readonly releaseCalls: BoundedCallKind<ReleaseOutcome, ReleaseOutcome, Lease> = {
    answered: (outcome, call) => {
      this.calls.backendRecovered();
      this.table.vacate(call.subject.storeKey);
      return outcome;
    },
    failed: (call, error, timedOut) => {
      this.table.vacate(call.subject.storeKey);
      return this.calls.callError(call, error, timedOut);
    },
  };

  constructor(
    private readonly backend: LockBackend,
    private readonly options: ResolvedLockModuleOptions,
    private readonly calls: StoreCalls,
    private readonly table: LocalKeyTable,
    private readonly loss: LeaseLoss,
    private readonly gate: ShutdownGate,
    instanceId: string,
    private readonly events: LockEvents,
  ) {
    this.defaultOwner = Object.freeze({ ownerId: options.ownerId, instanceId, hostname: HOSTNAME, pid: process.pid });
    this.keeper = new LeaseKeeper({
      extend: (batch) => this.calls.call('extend', () => this.backend.extend(batch.map((lease) => (lease as Lease).ref))),
      lost: (lease, reason) => this.loss.lose(lease as Lease, reason),
      extendFailed: (error, size) => {
        this.calls.noteBackendFailure(`heartbeat of ${size} lease(s)`, error);
        if (this.events.active) this.events.emit({ type: 'heartbeat-failed', backend: this.backend.name, leases: size, error });
      },
    });
  }

  grant(key: string, request: LockRequest, fencingToken: number, sentAt: number): Lease {
    const heartbeatMs = this.heartbeatFor(request.ttlMs);
    // The request object is the lease's backend reference from now on: nothing else keeps it.
    const lease = new Lease(this, key, request, fencingToken, heartbeatMs, sentAt);
    // Counted from the answer, not the send: the hold then lasts at least minHoldMs on the store's clock too.
    const minHoldMs = (request as MinHeldRequest)[MIN_HOLD_MS];
    if (minHoldMs) lease.holdUntil = performance.now() + minHoldMs;
    const name = (request as NamedRequest)[LOCK_NAME];
    if (name) lease.name = name;
    this.table.addLease(lease);
    this.keeper.add(lease);
    return lease;
  }

  /** The module's heartbeat, or a third of a shorter per-call lease. */
  private heartbeatFor(ttlMs: number): number {
    return Math.max(1, Math.min(this.options.heartbeatMs, Math.floor(ttlMs / 3)));
  }

  request(storeKey: string, options: CallOptions, queueToken?: string): LockRequest {
    const request: LockRequest = {
      key: storeKey,
      token: queueToken ?? newLockToken(),
      ttlMs: options.ttlMs,
      mode: options.mode,
      owner: this.owner(options.ownerId),
    };
    if (queueToken) request.queue = { waitMs: options.waitMs };
    if (options.limit > 1) request.limit = options.limit;
    if (options.minHoldMs > 0) (request as MinHeldRequest)[MIN_HOLD_MS] = options.minHoldMs;
    if (options.name !== DEFAULT_LOCK_NAME) (request as NamedRequest)[LOCK_NAME] = options.name;
    return request;
  }

  private owner(ownerId: string): LockOwner {
    if (ownerId === this.defaultOwner.ownerId) return this.defaultOwner;
    return { ...this.defaultOwner, ownerId };
  }

  /** A grant that arrives after shutdown began is given back at once, never handed to the caller. */
  refuseIfClosing(grant: { acquired: boolean }, requests: readonly LockRequest[]): void {
    if (!this.gate.closing) return;
    this.giveBack(grant, requests);
    throw new LockShuttingDownError();
  }

  /** The store granted leases nobody will hold (we stopped waiting, or are closing): give them back. */
  giveBack(grant: { acquired: boolean }, requests: readonly LockRequest[]): void {
    if (!grant.acquired) return;
    for (const request of requests) void this.calls.call('release', () => this.backend.release(request)).catch(() => undefined);
  }

  async extendLease(lease: Lease, ttlMs?: number): Promise<boolean> {
    // Released inside its minimum hold (`holdTimer`): the hold's end is fixed, the lease no longer extends.
    if (lease.state !== 'held' || lease.holdTimer !== undefined) return false;
    if (ttlMs !== undefined) {
      resolveCallOptions({ ttlMs }, this.options);
      lease.ttlMs = ttlMs;
      lease.heartbeatMs = this.heartbeatFor(ttlMs);
    }
    const sentAt = performance.now();
    let stillOurs: boolean | null;
    try {
      [stillOurs] = await this.calls.call('extend', () => this.backend.extend([lease.ref]));
    } catch (error) {
      // The store may have applied a shorter lease all the same.
      if (ttlMs !== undefined) this.keeper.unconfirmed(lease, sentAt);
      throw error;
    }
    if (stillOurs === null) {
      if (ttlMs !== undefined) this.keeper.unconfirmed(lease, sentAt);
      throw new LockBackendError(this.backend.name, 'extend: the store could not say');
    }
    if (stillOurs) this.keeper.confirmed(lease, sentAt);
    else this.lose(lease, 'taken-over');
    return Boolean(stillOurs);
  }

  leaseLapsed(lease: Lease): void {
    this.lose(lease, 'lease-timed-out');
  }

  /** Not async on the common path (nobody of ours waiting), for the reason given at `LockAcquirer.attempt`. */
  releaseLease(lease: Lease): Promise<ReleaseOutcome> {
    // `holdUntil` is 0 without a minimum hold: no clock read on the common path.
    if (lease.holdUntil !== 0 && lease.holdUntil > performance.now()) {
      // Shutdown already cut it to the rest of its hold (`releaseEverything`): left to run out, never deleted.
      if (this.gate.closing) return this.keepAtShutdown(lease);
      if (lease.state === 'held') return this.releaseAfterMinHold(lease);
    }
    return this.releaseNow(lease);
  }

  /** Released by its holder during shutdown, inside its minimum hold: forgotten here, left in the store. */
  private keepAtShutdown(lease: Lease): Promise<ReleaseOutcome> {
    if (lease.state === 'held') lease.state = 'released';
    this.keeper.delete(lease);
    if (this.table.removeLease(lease)) this.table.vacate(lease.storeKey);
    return Promise.resolve('released');
  }

  // --- minimum hold (minHoldMs) ------------------------------------------------------------
  // A lease released inside its minimum hold stays taken (local slot and store lease) until
  // the hold ends; the caller is answered at once and heartbeats stop.

  /** The work ended early: cut the lease to the hold's remainder and release it when that ends. */
  private releaseAfterMinHold(lease: Lease): Promise<ReleaseOutcome> {
    const remainingMs = this.cutToMinHold(lease);
    lease.deadline = lease.holdUntil;
    // The store drops the lease by itself at the cut TTL (Redis, memory); this release wakes
    // waiters at once there, and is what ends the hold where leases do not expire (file).
    lease.holdTimer = setTimeout(() => {
      lease.holdTimer = undefined;
      void this.releaseNow(lease).catch((error: unknown) => this.releaseFailed(lease, error));
    }, remainingMs);
    lease.holdTimer.unref();
    return Promise.resolve('released');
  }

  /** Stops the lease's heartbeat and sets its store TTL to what is left of its minimum hold; returns that. */
  private cutToMinHold(lease: Lease): number {
    clearTimeout(lease.holdTimer);
    this.keeper.delete(lease);
    const remainingMs = Math.max(1, Math.ceil(lease.holdUntil - performance.now()));
    lease.ttlMs = remainingMs;
    void this.calls.call('extend', () => this.backend.extend([lease.ref])).then(
      noop,
      (error: unknown) => this.logger.debug(`Could not cut "${lease.key}" to its minimum hold: ${errorMessage(error)}`),
    );
    return remainingMs;
  }

  private releaseNow(lease: Lease): Promise<ReleaseOutcome> {
    const wasHeld = lease.state === 'held';
    if (lease.state !== 'lost') lease.state = 'released';
    this.keeper.delete(lease);
    const local = this.table.removeLease(lease);
    if (wasHeld && this.events.active) this.events.released(lease);
    if (wasHeld && local && local.waiters.length > 0) return this.releaseToLocalWaiter(lease, local);
    return this.releaseToStore(lease);
  }

  private releaseToStore(lease: Lease): Promise<ReleaseOutcome> {
    return this.calls.follow(this.releaseCalls, 'release', lease, this.backend.release, lease.ref);
  }

  private async releaseToLocalWaiter(lease: Lease, local: LocalKey): Promise<ReleaseOutcome> {
    // A hand-over that failed in any way leaves a plain release to do.
    if (!(await this.handOverLocally(lease, local).catch(() => false))) return this.releaseToStore(lease);
    this.table.vacate(lease.storeKey);
    return 'released';
  }

  /**
   * Pass a plain exclusive lease straight to the next waiter of this process: one atomic store
   * call (fresh token and fencing token) instead of a release and an acquire. Capped so other
   * processes get their turn (see `LocalKeyTable.handOffCandidate`).
   */
  private async handOverLocally(lease: Lease, local: LocalKey): Promise<boolean> {
    const handOver = this.backend.handOver?.bind(this.backend);
    if (!handOver || this.gate.closing) return false;
    const next = this.table.handOffCandidate(local, lease);
    if (!next) return false;
    const request = this.request(lease.storeKey, next.options);
    const sentAt = performance.now();
    const handed = await this.calls
      .call(
        'handOver',
        () => handOver(lease.ref, request),
        (late) => this.giveBack({ acquired: late !== null }, [request]),
      )
      .catch(() => null);
    if (!handed) return false;
    if (local.waiters[0] !== next) {
      // The waiter gave up while the store was answering: the new grant is nobody's.
      this.giveBack({ acquired: true }, [request]);
      return true;
    }
    this.table.handedOff(local);
    next.grant(this.grant(lease.key, request, handed.fencingToken, sentAt));
    return true;
  }

  /** Release every lock given; failures are logged, never thrown. */
  async releaseAll(locks: readonly HeldLock[]): Promise<void> {
    if (locks.length === 1) return locks[0].release().then(noop, (error: unknown) => this.releaseFailed(locks[0], error));
    await Promise.all(
      [...locks].reverse().map((lock) => lock.release().then(noop, (error: unknown) => this.releaseFailed(lock, error))),
    );
  }

  releaseQuietly(lease: Lease): Promise<void> {
    return lease.release().then(noop, (error: unknown) => this.releaseFailed(lease, error));
  }

  private releaseFailed(lock: HeldLock, error: unknown): void {
    this.logger.warn(`Could not release lock "${lock.key}": ${errorMessage(error)}; it expires with its lease`);
  }

  private lose(lease: Lease, reason: LockLostReason): void {
    this.keeper.delete(lease);
    this.loss.lose(lease, reason);
  }

  /**
   * Shutdown: every lease of this process is lost (its signal aborts) and released. A lease
   * inside its minimum hold is not deleted: its TTL is cut to the hold's remainder, so a job
   * run just before a deploy is not run again by another replica.
   */
  async releaseEverything(): Promise<void> {
    await Promise.all(
      this.table.leases().map((lease) => {
        // A lease whose work ended (inside its minimum hold) has nothing left to abort.
        const lingering = lease.holdTimer !== undefined;
        if (!lingering) this.lose(lease, 'shutdown');
        if (lease.holdUntil > performance.now()) return this.cutToMinHold(lease);
        if (!lingering) return this.releaseQuietly(lease);
        clearTimeout(lease.holdTimer);
        return this.releaseNow(lease).then(noop, (error: unknown) => this.releaseFailed(lease, error));
      }),
    );
  }

  /** After shutdown: no more heartbeats. */
  stop(): void {
    this.keeper.stop();
  }
}

const HOSTNAME = hostname();
/**
 * `minHoldMs` on the requests that have one, under a symbol backends never read. Most requests
 * have none: the grant's lookup is then an inline-cached miss (a WeakMap lookup cost more).
 */
const MIN_HOLD_MS = Symbol('minHoldMs');
type MinHeldRequest = LockRequest & { [MIN_HOLD_MS]?: number };
/** The call's `name` (lock events, metrics), the same way: only on requests that have one. */
const LOCK_NAME = Symbol('lockName');
type NamedRequest = LockRequest & { [LOCK_NAME]?: string };

function noop(): void {}
