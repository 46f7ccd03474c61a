import { LockLostError, MemoryLockBackend, MemoryLockStore, SpaceLockService } from '../../lib';
import { resolveLockOptions } from '../../lib/lock-options.validation';

/** Busy-waits: the event loop runs nothing else meanwhile, as in a long synchronous task or a GC pause. */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

describe('HeldLock.ensureHeld(): a synchronous lease check on the monotonic clock', () => {
  let locks: SpaceLockService;
  beforeEach(() => {
    const backend = new MemoryLockBackend({ store: new MemoryLockStore() });
    locks = new SpaceLockService(resolveLockOptions({ backend, ttlMs: 300 }), backend);
  });
  afterEach(() => locks.beforeApplicationShutdown());

  it('passes while the lease is alive, without a round trip', async () => {
    const lock = await locks.acquire('alive');
    expect(() => lock.ensureHeld()).not.toThrow();
    expect(lock.signal.aborted).toBe(false);
    await lock.release();
  });

  it('after the event loop was blocked past the lease: throws before any timer ran, and the signal aborts at once', async () => {
    const lock = await locks.acquire('blocked');
    const signal = lock.signal;
    blockEventLoop(400); // no heartbeat and no keeper timer could run
    expect(signal.aborted).toBe(false);
    let thrown: unknown;
    try {
      lock.ensureHeld();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(LockLostError);
    expect((thrown as LockLostError).reason).toBe('lease-timed-out');
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe(thrown);
    expect(locks.held()).toEqual([]);
    await expect(lock.release()).resolves.toBeDefined();
  });

  it('after release: throws LockLostError with reason "released"', async () => {
    const lock = await locks.acquire('released');
    await lock.release();
    expect(() => lock.ensureHeld()).toThrow(expect.objectContaining({ name: 'LockLostError', reason: 'released' }));
  });
});
