import { performance } from 'node:perf_hooks';
/** What the keeper needs to know about a lease it keeps alive. */
export interface KeptLease {
  ttlMs: number;
  heartbeatMs: number;
  /** Monotonic time of the next heartbeat. */
  nextBeatAt: number;
  /** Monotonic time after which the store may already have expired the lease. */
  deadline: number;
  /** Where the keeper holds this lease, -1 while it does not (owned by the keeper). */
  keeperSlot: number;
}

export interface LeaseKeeperHooks {
  /** Compare-and-extend a batch; rejects when the store is unreachable. */
  extend(batch: readonly KeptLease[]): Promise<(boolean | null)[]>;
  lost(lease: KeptLease, reason: 'taken-over' | 'lease-timed-out'): void;
  extendFailed(error: unknown, batchSize: number): void;
}

/**
 * One timer for every lease of the process. Each tick extends, in a single backend call,
 * all leases whose heartbeat is due or nearly due (so leases taken at slightly different
 * times share round trips), and gives up leases whose locally measured time ran out.
 */
export class LeaseKeeper {
  /**
   * Every kept lease, each knowing its slot: adding and removing (by swapping in the last one)
   * allocate nothing, where a Set's table churned with the short leases of busy services.
   */
  private readonly leases: KeptLease[] = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(private readonly hooks: LeaseKeeperHooks) {}

  /** Safety margin subtracted from the lease: covers clock-rate drift between us and the store. */
  static deadlineFrom(sentAt: number, ttlMs: number): number {
    return sentAt + ttlMs - Math.min(1_000, Math.max(1, Math.floor(ttlMs / 10)));
  }

  add(lease: KeptLease): void {
    if (lease.keeperSlot >= 0) return;
    lease.keeperSlot = this.leases.length;
    this.leases.push(lease);
    this.scheduleAt(Math.min(lease.nextBeatAt, lease.deadline));
  }

  delete(lease: KeptLease): void {
    // The timer stays armed (unref'd) when the last lease goes: re-arming it for every
    // short-lived lease cost more than one spare tick.
    const slot = lease.keeperSlot;
    if (slot < 0) return;
    const last = this.leases.pop() as KeptLease;
    if (last !== lease) {
      this.leases[slot] = last;
      last.keeperSlot = slot;
    }
    lease.keeperSlot = -1;
  }

  private has(lease: KeptLease): boolean {
    return lease.keeperSlot >= 0;
  }

  /**
   * Confirms the lease after a successful extend that was sent at `sentAt`. An explicit
   * `extend(ttlMs)` may have shortened the lease: the next beat and the timer follow it.
   */
  confirmed(lease: KeptLease, sentAt: number): void {
    lease.deadline = LeaseKeeper.deadlineFrom(sentAt, lease.ttlMs);
    lease.nextBeatAt = Math.min(lease.nextBeatAt, sentAt + lease.heartbeatMs);
    if (this.has(lease)) this.scheduleAt(Math.min(lease.nextBeatAt, lease.deadline));
  }

  /**
   * An explicit `extend(ttlMs)` sent at `sentAt` got no answer (timed out or failed): the store
   * may have applied it. Count down from whichever ends first, and beat on the new heartbeat.
   */
  unconfirmed(lease: KeptLease, sentAt: number): void {
    lease.deadline = Math.min(lease.deadline, LeaseKeeper.deadlineFrom(sentAt, lease.ttlMs));
    lease.nextBeatAt = Math.min(lease.nextBeatAt, sentAt + lease.heartbeatMs);
    if (this.has(lease)) this.scheduleAt(Math.min(lease.nextBeatAt, lease.deadline));
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private scheduleAt(at: number): void {
    if (at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(at - performance.now())));
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = performance.now();
    const due: KeptLease[] = [];
    let next = Infinity;
    // Backwards: removing the lease at `slot` moves an already visited one into it. A `lost`
    // hook releasing others may move a visited lease into a slot still ahead (or empty one):
    // its next beat was already moved on, so it is not beaten twice.
    for (let slot = this.leases.length - 1; slot >= 0; slot--) {
      const lease = this.leases[slot];
      if (lease === undefined) continue;
      if (lease.deadline <= now) {
        this.delete(lease);
        this.hooks.lost(lease, 'lease-timed-out');
        continue;
      }
      if (lease.nextBeatAt - now <= lease.heartbeatMs / 4) {
        due.push(lease);
        lease.nextBeatAt = now + lease.heartbeatMs;
      }
      next = Math.min(next, lease.nextBeatAt, lease.deadline);
    }
    if (due.length > 0) void this.beat(due, now);
    if (next !== Infinity) this.scheduleAt(next);
  }

  private async beat(batch: KeptLease[], sentAt: number): Promise<void> {
    let stillOurs: (boolean | null)[];
    try {
      stillOurs = await this.hooks.extend(batch);
    } catch (error) {
      // The store is unreachable: keep counting down; the deadline decides.
      this.hooks.extendFailed(error, batch.length);
      return;
    }
    batch.forEach((lease, index) => {
      if (!this.has(lease) || stillOurs[index] === null) return;
      if (stillOurs[index]) {
        this.confirmed(lease, sentAt);
        return;
      }
      this.delete(lease);
      this.hooks.lost(lease, 'taken-over');
    });
  }
}
