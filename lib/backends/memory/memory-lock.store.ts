import { performance } from 'node:perf_hooks';
import type { LockRecord, LockRequest } from '../../lock-backend.interface';
import { holderRecord } from '../holder-record';

interface MemoryLease {
  token: string;
  expiresAt: number;
  record: LockRecord;
}

/**
 * The state behind the memory backend: leases with real expiry (monotonic clock), a
 * fencing counter and release notifications. One store per process by default; tests pass
 * one store to several module instances to play several replicas.
 */
export class MemoryLockStore {
  private readonly leases = new Map<string, MemoryLease>();
  private readonly releaseListeners = new Map<string, Set<() => void>>();
  // One counter for the whole store keeps tokens strictly increasing per key without
  // keeping state for keys nobody holds any more.
  private fence = 0;

  /** The live lease of `key`, dropping it when its time is up. */
  get(key: string): MemoryLease | undefined {
    const lease = this.leases.get(key);
    if (lease && lease.expiresAt <= performance.now()) {
      this.leases.delete(key);
      return undefined;
    }
    return lease;
  }

  grant(request: LockRequest): number {
    const fencingToken = ++this.fence;
    this.leases.set(request.key, {
      token: request.token,
      expiresAt: performance.now() + request.ttlMs,
      record: holderRecord(request, fencingToken),
    });
    return fencingToken;
  }

  remove(key: string): void {
    this.leases.delete(key);
    const listeners = this.releaseListeners.get(key);
    if (!listeners) return;
    this.releaseListeners.delete(key);
    for (const wake of listeners) wake();
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

  /** How many listeners wait for a release of `key`. */
  waiting(key: string): number {
    return this.releaseListeners.get(key)?.size ?? 0;
  }

  *entries(): IterableIterator<[string, MemoryLease]> {
    for (const key of [...this.leases.keys()]) {
      const lease = this.get(key);
      if (lease) yield [key, lease];
    }
  }
}
