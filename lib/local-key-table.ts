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
  /** The semaphore size its occupants asked for; `1` for a plain lock. */
  limit: number;
  /** Leases held plus attempts in flight. */
  occupants: number;
  /** This process's leases on the key (one, or several shared): a list, as it is that short. */
  leases: Lease[];
  waiters: LocalWaiter[];
  consecutiveHandoffs: number;
}

/**
 * The in-process side of every lock, whatever the backend: who of this process occupies each
 * key (held leases and attempts in flight), in which mode and with which `limit`, the callers
 * of this process queued behind them (FIFO), and how often a key was handed straight to a
 * local waiter. Up to `limit` occupants share a semaphore's key, any number of readers a shared
 * one; the store still decides whether each of them gets in.
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

  /** May a caller with these options occupy `local` now, without queueing behind anyone? */
  admits(local: LocalKey, { mode, limit }: Pick<CallOptions, 'mode' | 'limit'>): boolean {
    return local.occupants === 0 || (local.waiters.length === 0 && fits(local, mode, limit));
  }

  /**
   * The `limit` this process occupies `local` with when a caller asks with another one
   * (`1`: a plain lock), else `null`: two callers of one key that disagree on what it is.
   */
  limitInUse(local: LocalKey, limit: number): number | null {
    return local.occupants > 0 && local.limit !== limit ? local.limit : null;
  }

  occupy(storeKey: string, { mode, limit }: Pick<CallOptions, 'mode' | 'limit'>): void {
    const local = this.local.get(storeKey);
    if (local) {
      local.occupants += 1;
      local.mode = mode;
      local.limit = limit;
      return;
    }
    this.local.set(storeKey, { mode, limit, occupants: 1, leases: [], waiters: [], consecutiveHandoffs: 0 });
  }

  /** One occupant left; let the next local waiters in (as many as fit), or forget the key. */
  vacate(storeKey: string): void {
    const local = this.local.get(storeKey);
    if (!local) return;
    local.occupants -= 1;
    // In order: readers queued behind a writer go in together, as they would have without the
    // writer; permits go to as many waiters as there are free ones.
    while (local.waiters.length > 0 && (local.occupants === 0 || fits(local, local.waiters[0].mode, local.waiters[0].options.limit))) {
      const next = local.waiters.shift() as LocalWaiter;
      local.occupants += 1;
      local.mode = next.mode;
      local.limit = next.options.limit;
      next.grant('slot');
    }
    if (local.occupants === 0) this.local.delete(storeKey);
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

  /**
   * When this process's holders may let a caller in: the last lease to end (a writer waits for
   * every reader), or for a semaphore the first (one free permit is enough).
   */
  localRetryAfter(local: LocalKey): number | null {
    if (local.leases.length === 0) return null;
    const pick = local.limit > 1 ? Math.min : Math.max;
    let end = local.leases[0].deadline;
    for (const lease of local.leases) end = pick(end, lease.deadline);
    return Math.max(0, Math.ceil(end - performance.now()));
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
   * The waiter an ending plain exclusive lease may be handed to, or `null` (never for shared or
   * `limit` leases: their store grants in its own order). Capped: after `maxLocalHandoffs`
   * hand-offs in a row the lease goes back to the store, so other processes get their turn.
   */
  handOffCandidate(local: LocalKey, lease: Lease): LocalWaiter | null {
    const next = local.waiters[0];
    if (!next || next.slotOnly || !isPlainExclusive(lease) || !isPlainExclusive(next.options)) return null;
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

/** Can a caller join `local`'s occupants (who are there already)? */
function fits(local: LocalKey, mode: LockMode, limit: number): boolean {
  if (limit !== local.limit) return false;
  if (limit > 1) return local.occupants < limit;
  return mode === 'shared' && local.mode === 'shared';
}

function isPlainExclusive({ mode, limit }: { mode: LockMode; limit?: number }): boolean {
  return mode === 'exclusive' && (limit ?? 1) === 1;
}

export function removeFrom<T>(list: T[], item: T): void {
  const index = list.indexOf(item);
  if (index >= 0) list.splice(index, 1);
}
