import { performance } from 'node:perf_hooks';
import type { Lease } from './lease';
import type { LockMode } from './lock-backend.interface';
import { LockShuttingDownError } from './lock.errors';
import type { Attempt, CallOptions } from './lock-attempt';

/** A caller of this process waiting for a key another local caller has. */
export interface LocalWaiter {
  mode: LockMode;
  options: CallOptions;
  /** A lease handed over directly, `'slot'` (the local slot is yours: go ask the store) or `'shutdown'`. */
  grant(turn: LocalTurn): void;
  /** A lock set's waiter: takes the slot and asks the store for the whole set itself, never a handed lease. */
  slotOnly: boolean;
}

export type LocalTurn = Lease | 'slot' | 'shutdown';

/** What this process does with one key right now. */
export interface LocalKey {
  mode: LockMode;
  /** Leases held plus attempts in flight. */
  occupants: number;
  /** This process's leases on the key (one, or several shared): a list, as it is that short. */
  leases: Lease[];
  waiters: LocalWaiter[];
  consecutiveHandoffs: number;
}

/**
 * The in-process side of every lock, whatever the backend: who of this process occupies each
 * key (held leases and attempts in flight) and in which mode, the callers of this process
 * queued behind them, and how often a key was handed straight to a local waiter. Counting
 * occupants per key and mode here is what lets `limit` and shared modes be counted the same
 * way for every backend (as the file backend's `process-lock-table.ts` does for its
 * descriptors).
 */
export class LocalKeyTable {
  private readonly local = new Map<string, LocalKey>();

  constructor(private readonly maxLocalHandoffs: number) {}

  get(storeKey: string): LocalKey | undefined {
    return this.local.get(storeKey);
  }

  /** Every lease of this process, on every key. */
  leases(): Lease[] {
    return [...this.local.values()].flatMap((state) => state.leases);
  }

  /** Keys this process occupies or waits for. */
  get size(): number {
    return this.local.size;
  }

  admits(local: LocalKey, mode: LockMode): boolean {
    return local.occupants === 0 || (mode === 'shared' && local.mode === 'shared' && local.waiters.length === 0);
  }

  occupy(storeKey: string, mode: LockMode): void {
    const local = this.local.get(storeKey);
    if (local) {
      local.occupants += 1;
      local.mode = mode;
      return;
    }
    this.local.set(storeKey, { mode, occupants: 1, leases: [], waiters: [], consecutiveHandoffs: 0 });
  }

  /** One occupant left; let the next local waiter in, or forget the key. */
  vacate(storeKey: string): void {
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
  queueLocally(local: LocalKey, options: CallOptions, slotOnly: boolean): Promise<LocalTurn | 'timeout'> {
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

  localRetryAfter(local: LocalKey): number | null {
    let latest: number | null = null;
    for (const lease of local.leases) latest = Math.max(latest ?? 0, lease.deadline - performance.now());
    return latest === null ? null : Math.max(0, Math.ceil(latest));
  }

  /**
   * Wait up to `waitMs` behind this process's own holder of a key: `'slot'` when it is ours,
   * a lease the holder handed straight over (never to `slotOnly` waiters), or a miss.
   */
  async waitLocally(local: LocalKey, options: CallOptions, slotOnly: boolean): Promise<'slot' | Attempt> {
    if (options.waitMs === 0) return { skipped: 'in-progress', retryAfterMs: this.localRetryAfter(local) };
    const turn = await this.queueLocally(local, options, slotOnly);
    if (turn === 'timeout') return { skipped: 'in-progress', retryAfterMs: this.localRetryAfter(local) };
    if (turn === 'shutdown') throw new LockShuttingDownError();
    return turn;
  }

  /** Give back the local slots of a set that could not be taken. */
  vacateAll(occupied: string[]): void {
    occupied.splice(0).forEach((storeKey) => this.vacate(storeKey));
  }

  addLease(lease: Lease): void {
    const local = this.local.get(lease.storeKey);
    // A one-element literal: the first push onto an empty list would reserve room for 17.
    if (local) {
      if (local.leases.length === 0) local.leases = [lease];
      else local.leases.push(lease);
    }
  }

  /** Forget a lease that ends; its key's state, if the key is still known. */
  removeLease(lease: Lease): LocalKey | undefined {
    const local = this.local.get(lease.storeKey);
    if (local) removeFrom(local.leases, lease);
    return local;
  }

  /**
   * The waiter an ending exclusive lease may be handed to, or `null`. Capped: after
   * `maxLocalHandoffs` hand-offs in a row the lease goes back to the store, so other processes
   * get their turn.
   */
  handOffCandidate(local: LocalKey, mode: LockMode): LocalWaiter | null {
    const next = local.waiters[0];
    if (!next || next.slotOnly || mode !== 'exclusive' || next.mode !== 'exclusive') return null;
    if (local.consecutiveHandoffs >= this.maxLocalHandoffs) {
      local.consecutiveHandoffs = 0;
      return null;
    }
    return next;
  }

  /** `next`, still first in line, takes over the key from a holder that vacates it next. */
  handedOff(local: LocalKey): void {
    local.waiters.shift();
    local.consecutiveHandoffs += 1;
    local.occupants += 1; // the waiter's occupancy; the holder's is vacated by its release
  }

  /** Shutdown: every local waiter gives up. */
  dismissWaiters(): void {
    for (const state of this.local.values()) state.waiters.splice(0).forEach((waiter) => waiter.grant('shutdown'));
  }
}

export function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}
