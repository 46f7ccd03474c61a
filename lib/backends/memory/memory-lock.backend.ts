import { performance } from 'node:perf_hooks';
import type {
  AcquireAllOutcome,
  AcquireOutcome,
  ExtendRequest,
  ForceReleaseOutcome,
  ForceReleaseRequest,
  LeaseRef,
  ListOptions,
  LockBackend,
  LockBackendCapabilities,
  LockRecord,
  LockRequest,
  PassedLease,
  ReleaseOutcome,
} from '../../lock-backend.interface';
import { MemoryLockStore, type MemoryLease } from './memory-lock.store';
import type { MemoryBackendOptions } from './memory-backend-options.interface';

/**
 * Locks inside one process with the same semantics as the distributed backends: leases that
 * expire, shared and exclusive modes, semaphores (`limit`), a FIFO queue whose head is handed
 * the lease on release. The rules live in the store (`MemoryLockStore`, `MemoryKeyState`);
 * this class answers the `LockBackend` questions with them.
 */
export class MemoryLockBackend implements LockBackend {
  readonly name = 'memory';
  readonly capabilities: LockBackendCapabilities = { shared: true, limit: true, inProcess: true };
  private readonly store: MemoryLockStore;

  constructor(options: MemoryBackendOptions = {}) {
    this.store = options.store ?? new MemoryLockStore();
  }

  async tryAcquire(request: LockRequest): Promise<AcquireOutcome> {
    return this.store.acquire(request);
  }

  /** All or none, checked and granted in one synchronous step. */
  async tryAcquireAll(requests: readonly LockRequest[]): Promise<AcquireAllOutcome> {
    const held: Extract<AcquireAllOutcome, { acquired: false }>['held'] = [];
    for (const request of requests) {
      const answer = this.store.check(request);
      if (answer.admitted) continue;
      const { retryAfterMs, limitInUse } = answer;
      held.push(limitInUse === undefined ? { key: request.key, retryAfterMs } : { key: request.key, retryAfterMs, limitInUse });
    }
    if (held.length > 0) return { acquired: false, held };
    return { acquired: true, fencingTokens: requests.map((request) => this.store.admit(request)) };
  }

  async extend(leases: readonly ExtendRequest[]): Promise<boolean[]> {
    return leases.map((lease) => this.store.extend(lease.key, lease.token, lease.ttlMs));
  }

  async release(lease: LeaseRef): Promise<ReleaseOutcome> {
    if (this.store.release(lease.key, lease.token)) return 'released';
    return this.store.get(lease.key) ? 'not-owner' : 'expired';
  }

  async handOver(from: LeaseRef, to: LockRequest): Promise<{ fencingToken: number } | null> {
    const fencingToken = this.store.handOver(from.token, to);
    return fencingToken === null ? null : { fencingToken };
  }

  /** Woken by any release of `key`; a waiter queued with `token` is answered with the lease the store passed to it. */
  waitForRelease(key: string, timeoutMs: number, signal: AbortSignal, token?: string): Promise<PassedLease | void> {
    const passed = (): PassedLease | undefined => {
      const lease = token === undefined ? undefined : this.store.holders(key).find((holder) => holder.token === token);
      return lease && { fencingToken: lease.record.fencingToken };
    };
    const already = passed();
    if (already) return Promise.resolve(already);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        unsubscribe();
        signal.removeEventListener('abort', done);
        resolve(passed());
      };
      // Ref'd: someone awaits this bounded wait (see LocalKeyTable.queueLocally).
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.store.onRelease(key, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async leaveQueue(key: string, token: string): Promise<void> {
    this.store.leave(key, token);
  }

  async inspect(key: string): Promise<LockRecord[]> {
    return this.store.holders(key).map(snapshot);
  }

  async list({ prefix, limit }: ListOptions): Promise<LockRecord[]> {
    const records: LockRecord[] = [];
    for (const [key, lease] of this.store.entries()) {
      if (records.length >= limit) break;
      if (key.startsWith(prefix)) records.push(snapshot(lease));
    }
    return records;
  }

  /** Callers of every module instance on this store waiting for a release of `key`. */
  async queueLength(key: string): Promise<number> {
    return this.store.waiting(key);
  }

  async forceRelease({ key, expectFencingToken }: ForceReleaseRequest): Promise<ForceReleaseOutcome> {
    const oldest = this.store.get(key);
    if (!oldest) return { outcome: 'not-held' };
    const [previous] = this.store.evict(key, expectFencingToken);
    if (!previous) return { outcome: 'changed-hands', current: snapshot(oldest) };
    return { outcome: 'released', previous: snapshot(previous) };
  }
}

function snapshot(lease: MemoryLease): LockRecord {
  return { ...lease.record, expiresInMs: Math.max(0, Math.ceil(lease.expiresAt - performance.now())) };
}
