import { performance } from 'node:perf_hooks';
import type { AcquireOutcome, LockRequest } from '../../lock-backend.interface';
import { holderRecord } from '../holder-record';
import { MemoryKeyState, type MemoryLease } from './memory-key-state';

export type { MemoryLease } from './memory-key-state';

/**
 * The state behind the memory backend: per key its holders (with real expiry on the monotonic
 * clock) and its queue of waiters (`MemoryKeyState`), one fencing counter, and release
 * notifications. Each method is one atomic transition. One store per process by default;
 * tests pass one store to several module instances to play several replicas.
 */
export class MemoryLockStore {
  private readonly keys = new Map<string, MemoryKeyState>();
  private readonly releaseListeners = new Map<string, Set<() => void>>();
  // One counter for the whole store keeps tokens strictly increasing per key (for both modes
  // and every permit) without keeping state for keys nobody holds any more.
  private fence = 0;

  /** The oldest live holder of `key` (its only holder for an exclusive lock). */
  get(key: string): MemoryLease | undefined {
    return this.find(key)?.holders[0];
  }

  /** Every live holder of `key`, oldest first. */
  holders(key: string): readonly MemoryLease[] {
    return this.find(key)?.holders ?? [];
  }

  /** How many waiters (that passed a queue token) are in line for `key`. */
  queued(key: string): number {
    return this.find(key)?.queued ?? 0;
  }

  /**
   * Take `request`'s key if the rules let it in now; else keep its place in line when it
   * passed a queue token. A token the store already let in (passed while it waited) is
   * answered with its grant, renewed.
   */
  acquire(request: LockRequest): AcquireOutcome {
    const now = performance.now();
    const state = this.open(request.key);
    const passed = state.holder(request.token);
    if (passed) {
      passed.expiresAt = now + request.ttlMs;
      return { acquired: true, fencingToken: passed.record.fencingToken };
    }
    const limitInUse = state.limitInUse(request);
    if (limitInUse !== null) {
      // Its place in line (taken before the key changed hands) is of no use; those behind it may go.
      if (state.dequeue(request.token)) this.changed(request.key, state, false);
      return { acquired: false, retryAfterMs: null, limitInUse };
    }
    if (state.admits(request)) {
      state.dequeue(request.token);
      const lease = this.mint(request);
      state.holders.push(lease);
      return { acquired: true, fencingToken: lease.record.fencingToken };
    }
    state.enqueue(request, now);
    return { acquired: false, retryAfterMs: state.retryAfterMs(now) };
  }

  /** Whether `request` could be let in now (never for a queued one: sets do not queue); see `acquire`. */
  check(request: LockRequest): { admitted: true } | { admitted: false; retryAfterMs: number | null; limitInUse?: number } {
    const state = this.find(request.key);
    if (!state) return { admitted: true };
    const limitInUse = state.limitInUse(request);
    if (limitInUse !== null) return { admitted: false, retryAfterMs: null, limitInUse };
    if (state.admits(request)) return { admitted: true };
    return { admitted: false, retryAfterMs: state.retryAfterMs(performance.now()) };
  }

  /** Let a request `check` admitted in, in the same synchronous step. */
  admit(request: LockRequest): number {
    const lease = this.mint(request);
    this.open(request.key).holders.push(lease);
    return lease.record.fencingToken;
  }

  /** Move `token`'s lease on to `ttlMs` from now; `false` when it no longer holds `key`. */
  extend(key: string, token: string, ttlMs: number): boolean {
    const lease = this.find(key)?.holder(token);
    if (!lease) return false;
    lease.expiresAt = performance.now() + ttlMs;
    lease.record.ttlMs = ttlMs;
    return true;
  }

  /** Drop `token`'s grant on `key` and let the next waiters in; `false` when it held nothing. */
  release(key: string, token: string): boolean {
    const state = this.find(key);
    if (!state?.removeHolder(token)) return false;
    this.changed(key, state, true);
    return true;
  }

  /** `to` takes `from`'s place on `key` in one step (local hand-off of a plain lock); its fencing token, or `null`. */
  handOver(from: string, to: LockRequest): number | null {
    const state = this.find(to.key);
    if (!state?.removeHolder(from)) return null;
    const lease = this.mint(to);
    state.holders.push(lease);
    return lease.record.fencingToken;
  }

  /** A waiter gave up: free its place in line, and a grant passed to it that it never took. */
  leave(key: string, token: string): void {
    const state = this.find(key);
    if (!state) return;
    const wasQueued = state.dequeue(token);
    const heldIt = state.removeHolder(token);
    if (wasQueued || heldIt) this.changed(key, state, heldIt);
  }

  /** An operator's reap: the holder with `fencingToken`, or every holder; the evicted ones, oldest first. */
  evict(key: string, fencingToken?: number): MemoryLease[] {
    const state = this.find(key);
    if (!state) return [];
    const evicted = state.holders.filter((lease) => fencingToken === undefined || lease.record.fencingToken === fencingToken);
    for (const lease of evicted) state.removeHolder(lease.token);
    if (evicted.length > 0) this.changed(key, state, true);
    return evicted;
  }

  onRelease(key: string, listener: () => void): () => void {
    let listeners = this.releaseListeners.get(key);
    if (!listeners) this.releaseListeners.set(key, (listeners = new Set()));
    listeners.add(listener);
    return () => {
      const current = this.releaseListeners.get(key);
      if (!current?.delete(listener) || current.size > 0) return;
      this.releaseListeners.delete(key);
    };
  }

  /** Every live holder of every key. */
  *entries(): IterableIterator<[string, MemoryLease]> {
    for (const key of [...this.keys.keys()]) {
      for (const lease of this.holders(key)) yield [key, lease];
    }
  }

  /** The state of `key`, expired holders dropped; created when missing. */
  private open(key: string): MemoryKeyState {
    const found = this.find(key);
    if (found) return found;
    const state = new MemoryKeyState();
    this.keys.set(key, state);
    return state;
  }

  /** The state of `key`, expired holders dropped (their waiters let in), or `undefined` when nobody holds or waits. */
  private find(key: string): MemoryKeyState | undefined {
    const state = this.keys.get(key);
    if (!state) return undefined;
    const holderLeft = state.prune(performance.now());
    if (holderLeft || state.idle) this.changed(key, state, holderLeft);
    return this.keys.get(key);
  }

  /**
   * After holders or waiters left: the head of the queue goes in (the lease is passed to it)
   * and every waiter of the key is told, to take its grant or ask again.
   */
  private changed(key: string, state: MemoryKeyState, holderLeft: boolean): void {
    const promoted = state.promote((request) => this.mint(request));
    if (state.idle) this.keys.delete(key);
    if (holderLeft || promoted > 0) this.notify(key);
  }

  private notify(key: string): void {
    const listeners = this.releaseListeners.get(key);
    if (!listeners) return;
    this.releaseListeners.delete(key);
    for (const wake of listeners) wake();
  }

  private mint(request: LockRequest): MemoryLease {
    const fencingToken = ++this.fence;
    return { token: request.token, expiresAt: performance.now() + request.ttlMs, record: holderRecord(request, fencingToken) };
  }
}
