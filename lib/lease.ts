import type { HeldLock } from './held-lock.interface';
import { LeaseKeeper, type KeptLease } from './lease-keeper';
import { performance } from 'node:perf_hooks';
import type { LockMode, LockRequest, ReleaseOutcome } from './lock-backend.interface';
import { LockLostError } from './lock.errors';
import { DEFAULT_LOCK_NAME } from './events/lock-event.interface';

/** Where a lease's own `extend` and `release` go (`HeldLeases`). */
export interface LeaseHolder {
  extendLease(lease: Lease, ttlMs?: number): Promise<boolean>;
  releaseLease(lease: Lease): Promise<ReleaseOutcome>;
  /** The local deadline passed before the keeper noticed (`ensureHeld`, `isHeldNow`): lose it now. */
  leaseLapsed(lease: Lease): void;
}

/** A lease of this process: what the caller holds and what the keeper keeps alive. */
export class Lease implements HeldLock, KeptLease {
  // Created on first use of `signal`: an AbortController per lease was ~20% of an
  // uncontended memory-backend cycle, and most callers never look at the signal.
  private controller?: AbortController;
  private lostReason?: unknown;
  readonly acquiredAt = Date.now();
  state: 'held' | 'lost' | 'released' = 'held';
  nextBeatAt: number;
  deadline: number;
  keeperSlot = -1;
  /** Minimum hold (`minHoldMs`): monotonic time before which a release only lets the lease run out. */
  holdUntil = 0;
  /** The release due when the minimum hold ends (see `HeldLeases.releaseAfterMinHold`). */
  holdTimer?: NodeJS.Timeout;
  /** `lock.name` of the call that took it (`HeldLeases.grant`): what its events are counted by. */
  name = DEFAULT_LOCK_NAME;
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

  get limit(): number | undefined {
    return this.ref.limit;
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

  /**
   * Still ours by our own count of the lease, on the monotonic clock? A lease whose time ran
   * out without a confirmed heartbeat (a paused process) is lost here, on the spot, before the
   * keeper's timer would notice: its signal aborts before this returns `false`.
   */
  isHeldNow(): boolean {
    // Released by its holder inside a minimum hold (`holdTimer`): still taken in the store, no longer the holder's to use.
    if (this.state !== 'held' || this.holdTimer !== undefined) return false;
    if (performance.now() < this.deadline) return true;
    this.holder.leaseLapsed(this);
    return false;
  }

  ensureHeld(): void {
    if (this.isHeldNow()) return;
    throw this.lostReason ?? new LockLostError(this.key, this.fencingToken, 'released');
  }
}
