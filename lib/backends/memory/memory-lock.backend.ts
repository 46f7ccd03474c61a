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
  ReleaseOutcome,
} from '../../lock-backend.interface';
import { MemoryLockStore } from './memory-lock.store';
import type { MemoryBackendOptions } from './memory-backend-options.interface';

/** Locks inside one process with the same lease semantics as the distributed backends. */
export class MemoryLockBackend implements LockBackend {
  readonly name = 'memory';
  readonly capabilities: LockBackendCapabilities = { shared: false, limit: false, inProcess: true };
  private readonly store: MemoryLockStore;

  constructor(options: MemoryBackendOptions = {}) {
    this.store = options.store ?? new MemoryLockStore();
  }

  async tryAcquire(request: LockRequest): Promise<AcquireOutcome> {
    const current = this.store.get(request.key);
    if (current) return { acquired: false, retryAfterMs: remaining(current.expiresAt) };
    return { acquired: true, fencingToken: this.store.grant(request) };
  }

  /** All or none, checked and granted in one synchronous step. */
  async tryAcquireAll(requests: readonly LockRequest[]): Promise<AcquireAllOutcome> {
    const held = requests.flatMap(({ key }) => {
      const current = this.store.get(key);
      return current ? [{ key, retryAfterMs: remaining(current.expiresAt) }] : [];
    });
    if (held.length > 0) return { acquired: false, held };
    return { acquired: true, fencingTokens: requests.map((request) => this.store.grant(request)) };
  }

  async extend(leases: readonly ExtendRequest[]): Promise<boolean[]> {
    return leases.map((lease) => {
      const current = this.store.get(lease.key);
      if (current?.token !== lease.token) return false;
      current.expiresAt = performance.now() + lease.ttlMs;
      current.record.ttlMs = lease.ttlMs;
      return true;
    });
  }

  async release(lease: LeaseRef): Promise<ReleaseOutcome> {
    const current = this.store.get(lease.key);
    if (!current) return 'expired';
    if (current.token !== lease.token) return 'not-owner';
    this.store.remove(lease.key);
    return 'released';
  }

  async handOver(from: LeaseRef, to: LockRequest): Promise<{ fencingToken: number } | null> {
    if (this.store.get(from.key)?.token !== from.token) return null;
    return { fencingToken: this.store.grant(to) };
  }

  waitForRelease(key: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        unsubscribe();
        signal.removeEventListener('abort', done);
        resolve();
      };
      // Ref'd: someone awaits this bounded wait (see LocalKeyTable.queueLocally).
      const timer = setTimeout(done, timeoutMs);
      const unsubscribe = this.store.onRelease(key, done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async inspect(key: string): Promise<LockRecord[]> {
    const current = this.store.get(key);
    return current ? [snapshot(current.record, current.expiresAt)] : [];
  }

  async list({ prefix, limit }: ListOptions): Promise<LockRecord[]> {
    const records: LockRecord[] = [];
    for (const [key, lease] of this.store.entries()) {
      if (records.length >= limit) break;
      if (key.startsWith(prefix)) records.push(snapshot(lease.record, lease.expiresAt));
    }
    return records;
  }

  async forceRelease({ key, expectFencingToken }: ForceReleaseRequest): Promise<ForceReleaseOutcome> {
    const current = this.store.get(key);
    if (!current) return { outcome: 'not-held' };
    const previous = snapshot(current.record, current.expiresAt);
    if (expectFencingToken !== undefined && previous.fencingToken !== expectFencingToken) {
      return { outcome: 'changed-hands', current: previous };
    }
    this.store.remove(key);
    return { outcome: 'released', previous };
  }
}

function remaining(expiresAt: number): number {
  return Math.max(0, Math.ceil(expiresAt - performance.now()));
}

function snapshot(record: LockRecord, expiresAt: number): LockRecord {
  return { ...record, expiresInMs: remaining(expiresAt) };
}
