import { performance } from 'node:perf_hooks';
import {
  LockBackendError,
  LockLostError,
  LockOptionsError,
  LockShuttingDownError,
  MemoryLockBackend,
  MemoryLockStore,
  type ExtendRequest,
  type HeldLock,
} from '../../lib';
import { until } from '../support/redis-server';
import { RemoteMemoryBackend as StoreAcrossNetwork, serviceOn, trackedServices } from '../support/services';

/** Edge cases of the service (shutdown, minimum hold, late answers, input): each failed on the code it was written against. */

/** A store across the network whose `extend` can be answered late. */
class RemoteMemoryBackend extends StoreAcrossNetwork {
  /** When set, `extend` is applied in the store at once but answered this much later (a paused connection). */
  lateExtendMs = 0;
  override async extend(leases: readonly ExtendRequest[]): Promise<boolean[]> {
    const answers = await super.extend(leases);
    if (this.lateExtendMs > 0) await new Promise((resolve) => setTimeout(resolve, this.lateExtendMs));
    return answers;
  }
}

const track = trackedServices();

describe('service edge cases', () => {
  it('invariant 3: extend(shorter ttl) that the store applied but answered too late still aborts the signal before another holder gets the key', async () => {
    const store = new MemoryLockStore();
    const backend = new RemoteMemoryBackend({ store });
    const holder = track(serviceOn(backend, { backendTimeoutMs: 50 }));
    const rival = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await holder.acquire('shortened'); // default ttl 30 s, heartbeat 10 s
    backend.lateExtendMs = 150;
    // The store now ends the lease 300 ms from here; we only learn that the call timed out.
    await expect(lock.extend(300)).rejects.toBeInstanceOf(LockBackendError);
    backend.lateExtendMs = 0;
    let abortedWhenRivalGotIt: boolean | undefined;
    let heldNowWhenRivalGotIt: boolean | undefined;
    const taken = await rival.tryAcquire('shortened', { waitMs: 1_500 });
    if (taken) {
      abortedWhenRivalGotIt = lock.signal.aborted;
      heldNowWhenRivalGotIt = holder.isHeldNow(lock);
      await taken.release();
    }
    // Either the holder kept the (shortened) lease alive, or it knew it lost it before the rival got in.
    if (taken) {
      expect({ abortedWhenRivalGotIt, heldNowWhenRivalGotIt }).toEqual({ abortedWhenRivalGotIt: true, heldNowWhenRivalGotIt: false });
    } else {
      expect(lock.signal.aborted).toBe(false);
    }
    await lock.release();
  });

  it('invariant 5: null call options get the defaults or a typed error, never a raw TypeError', async () => {
    const locks = track(serviceOn(new MemoryLockBackend()));
    const outcomes = await Promise.all([
      locks.withSpaceLock('null-options', () => 'ran', null as never).catch((error: unknown) => error),
      locks.tryAcquire('null-options-try', null as never).then((lock) => lock?.release().then(() => 'ran'), (error: unknown) => error),
      locks.withSpaceLocks(['null-a', 'null-b'], () => 'ran', null as never).catch((error: unknown) => error),
    ]);
    for (const outcome of outcomes) {
      if (outcome !== 'ran') expect(outcome).toBeInstanceOf(LockOptionsError);
    }
    expect(locks.held()).toEqual([]);
  });

  it('invariant 1/3: a caller waiting in the store when shutdown begins gets LockShuttingDownError (as local waiters do), not a busy miss', async () => {
    const store = new MemoryLockStore();
    const locks = serviceOn(new MemoryLockBackend({ store }));
    const other = track(serviceOn(new MemoryLockBackend({ store })));
    const held = await other.acquire('remote-busy');
    const waiting = locks.acquire('remote-busy', { waitMs: 60_000 }).catch((error: unknown) => error);
    const skipped = locks.withSpaceLock('remote-busy', () => 'ran', { waitMs: 60_000 }).catch((error: unknown) => error);
    await until(() => store.waiting('lock:remote-busy') >= 1);
    await locks.beforeApplicationShutdown();
    expect(await waiting).toBeInstanceOf(LockShuttingDownError);
    expect(await skipped).toBeInstanceOf(LockShuttingDownError);
    await held.release();
  });

  it('invariant 1 (shutdown): a running job inside its minimum hold keeps its lease at shutdown even when its work ends on the abort', async () => {
    const store = new MemoryLockStore();
    const locks = serviceOn(new MemoryLockBackend({ store }));
    const observer = track(serviceOn(new MemoryLockBackend({ store })));
    let lock: HeldLock | undefined;
    const job = locks.withSpaceLock(
      'deploy-job',
      async (held) => {
        lock = held;
        // A well-behaved job: it stops when its signal aborts.
        await new Promise((resolve) => held.signal.addEventListener('abort', resolve, { once: true }));
        return 'stopped';
      },
      { minHoldMs: 5_000 },
    );
    await until(() => lock !== undefined);
    await locks.beforeApplicationShutdown();
    expect(await job).toBe('stopped');
    // Shutdown cut the lease to its minimum hold (HeldLeases.releaseEverything) instead of deleting it...
    const holder = await observer.inspect('deploy-job');
    expect(holder).not.toBeNull();
    expect(await observer.tryAcquire('deploy-job')).toBeNull();
  });
  it('HeldLock contract: after release() inside a minimum hold the lock reads as released (ensureHeld throws, extend resolves false) and the hold still ends on time', async () => {
    const store = new MemoryLockStore();
    const locks = track(serviceOn(new MemoryLockBackend({ store })));
    const rival = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await locks.acquire('linger', { minHoldMs: 400 });
    const grantedAt = performance.now();
    await expect(lock.release()).resolves.toBe('released');
    // Released by its holder: not to be used for side effects any more, nor extended.
    expect(() => lock.ensureHeld()).toThrow(LockLostError);
    expect(locks.isHeldNow(lock)).toBe(false);
    await expect(lock.extend(60_000)).resolves.toBe(false);
    // The hold itself is unchanged: the key stays taken until minHoldMs after the grant, then frees.
    expect(await rival.tryAcquire('linger')).toBeNull();
    const next = await rival.acquire('linger', { waitMs: 5_000 });
    expect(performance.now() - grantedAt).toBeLessThan(2_000);
    await next.release();
  });
  it('invariant 5: forceRelease with an expectFencingToken that is no integer gets a typed error (memory answered changed-hands, Redis compares strings)', async () => {
    const locks = track(serviceOn(new MemoryLockBackend()));
    const lock = await locks.acquire('reap-me');
    for (const expectFencingToken of [String(lock.fencingToken), 1.5, Number.NaN, null, -1]) {
      await expect(locks.forceRelease('reap-me', { reason: 'test', expectFencingToken: expectFencingToken as never })).rejects.toBeInstanceOf(LockOptionsError);
    }
    expect(await locks.inspect('reap-me')).not.toBeNull();
    await lock.release();
  });
  it('invariant 1 (shutdown): a grant whose answer is late (its call already timed out) is still given back before the backend closes', async () => {
    const store = new MemoryLockStore();
    /** Applies tryAcquire at once, answers it late; after close() the connection refuses every call (as ioredis after QUIT). */
    class ClosingBackend extends RemoteMemoryBackend {
      lateTryAcquireMs = 0;
      closed = false;
      override async tryAcquire(...args: Parameters<MemoryLockBackend['tryAcquire']>) {
        if (this.closed) throw new Error('Connection is closed.');
        const outcome = await super.tryAcquire(...args);
        if (this.lateTryAcquireMs > 0) await new Promise((resolve) => setTimeout(resolve, this.lateTryAcquireMs));
        return outcome;
      }
      override async release(...args: Parameters<MemoryLockBackend['release']>) {
        if (this.closed) throw new Error('Connection is closed.');
        return super.release(...args);
      }
      async close(): Promise<void> {
        this.closed = true;
      }
    }
    const backend = new ClosingBackend({ store });
    const locks = serviceOn(backend, { backendTimeoutMs: 50 });
    backend.lateTryAcquireMs = 80;
    // The store grants at once; the caller sees a timeout at 50 ms; the grant's answer comes at 80 ms, while shutdown runs.
    await expect(locks.tryAcquire('late-at-shutdown')).rejects.toBeInstanceOf(LockBackendError);
    expect(store.holders('lock:late-at-shutdown')).toHaveLength(1);
    await locks.beforeApplicationShutdown();
    await new Promise((resolve) => setTimeout(resolve, 250));
    // Nobody holds that grant: it must not block the key for its whole 30 s lease.
    expect(store.holders('lock:late-at-shutdown')).toHaveLength(0);
  });
});
