import { performance } from 'node:perf_hooks';
import {
  InvalidLockKeyError,
  isSkipped,
  LockBackendError,
  LockHeldError,
  LockLostError,
  LockNotSupportedError,
  LockOptionsError,
  LockShuttingDownError,
  LockTimeoutError,
  MemoryLockBackend,
  MemoryLockStore,
  SpaceLockService,
  type AcquireOutcome,
  type ExtendRequest,
  type LockBackend,
} from '../../lib';
import { resolveLockOptions } from '../../lib/lock-options.validation';
import { RemoteMemoryBackend, serviceOn, trackedServices } from '../support/services';

/** Memory backend whose heartbeats can be stalled or broken, to play a paused process or a dead store. */
class StallableBackend extends RemoteMemoryBackend {
  stalled = false;
  failing = false;
  extendCalls = 0;
  /** Extends the store confirmed, each with the lease's expiry in the store right after it. */
  readonly extended: { key: string; storeExpiresAt: number | undefined }[] = [];
  constructor(private readonly shared: MemoryLockStore = new MemoryLockStore()) {
    super({ store: shared });
  }
  override async extend(leases: readonly ExtendRequest[]): Promise<boolean[]> {
    this.extendCalls += 1;
    if (this.failing) throw new Error('connection refused');
    if (this.stalled) return new Promise(() => undefined);
    const answers = await super.extend(leases);
    for (const lease of leases) this.extended.push({ key: lease.key, storeExpiresAt: this.shared.get(lease.key)?.expiresAt });
    return answers;
  }
  override async tryAcquire(...args: Parameters<MemoryLockBackend['tryAcquire']>) {
    if (this.failing) throw new Error('connection refused');
    return super.tryAcquire(...args);
  }
  override async tryAcquireAll(...args: Parameters<MemoryLockBackend['tryAcquireAll']>) {
    if (this.failing) throw new Error('connection refused');
    return super.tryAcquireAll(...args);
  }
}

/** Memory backend counting the store calls that take locks. */
class CountingBackend extends MemoryLockBackend {
  calls = { tryAcquire: 0, tryAcquireAll: 0 };
  override tryAcquire(...args: Parameters<MemoryLockBackend['tryAcquire']>) {
    this.calls.tryAcquire += 1;
    return super.tryAcquire(...args);
  }
  override tryAcquireAll(...args: Parameters<MemoryLockBackend['tryAcquireAll']>) {
    this.calls.tryAcquireAll += 1;
    return super.tryAcquireAll(...args);
  }
}

/** The same backend without `tryAcquireAll`: the service takes sets key by key. */
function withoutSets(backend: MemoryLockBackend): LockBackend {
  Object.defineProperty(backend, 'tryAcquireAll', { value: undefined });
  return backend;
}

function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (condition()) return resolve();
      if (performance.now() - started > timeoutMs) return reject(new Error('condition not met in time'));
      setTimeout(check, 5);
    };
    check();
  });
}

const track = trackedServices();

describe('SpaceLockService on the memory backend', () => {
  it('runs fn under the lock and returns its result', async () => {
    const locks = track(serviceOn(new MemoryLockBackend()));
    const result = await locks.withSpaceLock('a', async (lock) => {
      expect(lock.key).toBe('a');
      expect(lock.fencingToken).toBeGreaterThan(0);
      expect(await locks.inspect('a')).toMatchObject({ key: 'a', local: true, fencingToken: lock.fencingToken });
      return 42;
    });
    expect(result).toBe(42);
    expect(await locks.inspect('a')).toBeNull();
  });

  it('answers in-progress inside one process and lock-held across replicas', async () => {
    const store = new MemoryLockStore();
    const replicaA = track(serviceOn(new MemoryLockBackend({ store })));
    const replicaB = track(serviceOn(new MemoryLockBackend({ store })));
    let inner: unknown;
    let other: unknown;
    await replicaA.withSpaceLock('space:1', async () => {
      inner = await replicaA.withSpaceLock('space:1', async () => 'never');
      other = await replicaB.withSpaceLock('space:1', async () => 'never');
    });
    expect(inner).toEqual({ skipped: 'in-progress' });
    expect(other).toEqual({ skipped: 'lock-held' });
    expect(isSkipped(inner) && isSkipped(other)).toBe(true);
    expect(isSkipped({ skipped: 'lock-held', extra: 1 })).toBe(false);
    expect(await replicaB.withSpaceLock('space:1', async () => 'ran')).toBe('ran');
  });

  it('releases when fn throws and lets the error through', async () => {
    const locks = track(serviceOn(new MemoryLockBackend()));
    await expect(
      locks.withSpaceLock('boom', async () => {
        throw new Error('work failed');
      }),
    ).rejects.toThrow('work failed');
    expect(await locks.inspect('boom')).toBeNull();
    expect(locks.held()).toEqual([]);
  });

  it('a failed release never hides the result or the error of the work', async () => {
    const backend = new MemoryLockBackend();
    backend.release = async () => {
      throw new Error('store gone');
    };
    const locks = track(serviceOn(backend));
    await expect(locks.withSpaceLock('r', async () => 'result')).resolves.toBe('result');
    await expect(
      locks.withSpaceLock('r2', async () => {
        throw new Error('work error');
      }),
    ).rejects.toThrow('work error');
  });

  it('fencing tokens strictly increase per key across holders', async () => {
    const store = new MemoryLockStore();
    const replicas = [0, 1, 2].map(() => track(serviceOn(new MemoryLockBackend({ store }))));
    const tokens: number[] = [];
    for (let round = 0; round < 9; round += 1) {
      await replicas[round % 3].withSpaceLock('fenced', (lock) => tokens.push(lock.fencingToken));
    }
    expect(tokens).toEqual([...tokens].sort((a, b) => a - b));
    expect(new Set(tokens).size).toBe(tokens.length);
  });

  it('heartbeat keeps a lease alive well past ttlMs while the work runs', async () => {
    const store = new MemoryLockStore();
    const backend = new StallableBackend(store);
    // A beat every 40 ms of a 400 ms lease: a busy machine may delay a beat tenfold and the lease still holds.
    const holder = track(serviceOn(backend, { ttlMs: 400, heartbeatMs: 40 }));
    const rival = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await holder.acquire('long');
    const grantExpiresAt = store.get('lock:long')!.expiresAt;
    // Decided by the store: the lease outlived its first expiry because heartbeats moved it on.
    await until(() => performance.now() > grantExpiresAt + 400);
    expect(lock.signal.aborted).toBe(false);
    expect(store.get('lock:long')).toMatchObject({ token: lock.token });
    expect(store.get('lock:long')!.expiresAt).toBeGreaterThan(grantExpiresAt + 400);
    expect(await rival.tryAcquire('long')).toBeNull();
    await expect(lock.release()).resolves.toBe('released');
  });

  it('a stalled heartbeat lets the lease expire: the signal aborts before the store expires it, and the next holder gets a higher token', async () => {
    const store = new MemoryLockStore();
    const backend = new StallableBackend(store);
    // The margin before the store's expiry is ttl/10 (100 ms): room for a late timer on a busy machine.
    const holder = track(serviceOn(backend, { ttlMs: 1_000, heartbeatMs: 100, backendTimeoutMs: 5_000 }));
    const rival = track(serviceOn(new MemoryLockBackend({ store })));
    const lost: string[] = [];
    holder.onLockLost((event) => lost.push(`${event.key}:${event.reason}`));
    const lock = await holder.acquire('stall');
    let atAbort: { at: number; storeLease: unknown } | undefined;
    lock.signal.addEventListener('abort', () => {
      atAbort = { at: performance.now(), storeLease: store.get('lock:stall') };
    });
    // Two beats confirmed by the store, then the store stops answering them.
    await until(() => backend.extended.length >= 2);
    backend.stalled = true;
    const lastConfirmed = backend.extended[backend.extended.length - 1];
    await until(() => lock.signal.aborted);
    // Against the store's own expiry, recorded at the last extend it confirmed; no slack.
    expect(lastConfirmed.storeExpiresAt).toBeDefined();
    expect(atAbort!.at).toBeLessThan(lastConfirmed.storeExpiresAt!);
    // And in the store's state at that moment: still ours, not yet expired.
    expect(atAbort!.storeLease).toMatchObject({ token: lock.token });
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    expect(lost).toEqual(['stall:lease-timed-out']);
    const next = await rival.acquire('stall', { waitMs: 1_000 });
    expect(next.fencingToken).toBeGreaterThan(lock.fencingToken);
    expect(await lock.release()).toBe('not-owner');
    await next.release();
  });

  it('a heartbeat that finds another owner aborts at once', async () => {
    const store = new MemoryLockStore();
    const holder = track(serviceOn(new MemoryLockBackend({ store }), { ttlMs: 300 }));
    const operator = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await holder.acquire('reaped');
    const outcome = await operator.forceRelease('reaped', { reason: 'test reap' });
    expect(outcome).toMatchObject({ outcome: 'released', previous: { fencingToken: lock.fencingToken } });
    await until(() => lock.signal.aborted);
    expect((lock.signal.reason as LockLostError).reason).toBe('taken-over');
  });

  it('a waiter gets the lock soon after release; a timed-out waiter throws and leaves nothing behind', async () => {
    const store = new MemoryLockStore();
    const holder = track(serviceOn(new MemoryLockBackend({ store })));
    const waiterSide = track(serviceOn(new MemoryLockBackend({ store })));
    const first = await holder.acquire('w');
    await expect(waiterSide.acquire('w', { waitMs: 50 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(waiterSide.held()).toEqual([]);
    // The holder's lease (30 s) bounds the waiter's fallback: only the release event can wake it within the 20 s wait.
    const waiting = waiterSide.acquire('w', { waitMs: 20_000 });
    await first.release();
    const second = await waiting;
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    await second.release();
  });

  it('waiters of one process are handed the lease in order, each with a fresh fencing token', async () => {
    const locks = track(serviceOn(new MemoryLockBackend()));
    const order: number[] = [];
    const tokens: number[] = [];
    let inside = 0;
    let overlaps = 0;
    await Promise.all(
      [0, 1, 2, 3, 4].map((worker) =>
        locks.withSpaceLock(
          'queue',
          async (lock) => {
            inside += 1;
            if (inside > 1) overlaps += 1;
            order.push(worker);
            tokens.push(lock.fencingToken);
            await new Promise((resolve) => setTimeout(resolve, 5));
            inside -= 1;
          },
          { waitMs: 5_000 },
        ),
      ),
    );
    expect(overlaps).toBe(0);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(tokens).toEqual([...tokens].sort((a, b) => a - b));
    expect(await locks.inspect('queue')).toBeNull();
  });

  it('acquire without waitMs throws LockHeldError with the remaining lease', async () => {
    const store = new MemoryLockStore();
    const a = track(serviceOn(new MemoryLockBackend({ store }), { ttlMs: 10_000 }));
    const b = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await a.acquire('held');
    const error = await b.acquire('held').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LockHeldError);
    expect((error as LockHeldError).retryAfterMs).toBeGreaterThan(9_000);
    await lock.release();
  });

  it('a store that fails gives LockBackendError, distinct from LockHeldError, within the bound', async () => {
    const backend = new StallableBackend();
    backend.failing = true;
    const locks = track(serviceOn(backend));
    await expect(locks.acquire('down')).rejects.toBeInstanceOf(LockBackendError);
    const hanging = new RemoteMemoryBackend();
    hanging.tryAcquire = () => new Promise(() => undefined);
    const slow = track(serviceOn(hanging, { backendTimeoutMs: 50 }));
    const started = performance.now();
    await expect(slow.acquire('hang')).rejects.toThrow(/timed out after 50 ms/);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(slow.held()).toEqual([]);
  });

  it.each([
    ['in one backend call (tryAcquireAll)', (store: MemoryLockStore): LockBackend => new MemoryLockBackend({ store })],
    ['key by key (a backend without tryAcquireAll)', (store: MemoryLockStore): LockBackend => withoutSets(new MemoryLockBackend({ store }))],
  ])('lock sets %s: all or nothing, and partial returns the subset it could take', async (_label, backendOn) => {
    const store = new MemoryLockStore();
    const a = track(serviceOn(backendOn(store)));
    const b = track(serviceOn(backendOn(store)));
    const blocker = await a.acquire('k2');
    expect(await b.withSpaceLocks(['k3', 'k1', 'k2'], async () => 'ran')).toEqual({ skipped: 'lock-held' });
    expect(await b.inspect('k1')).toBeNull();
    const partial = await b.tryAcquireMany(['k1', 'k2', 'k3'], { partial: true });
    expect(partial.acquired.map((lock) => lock.key)).toEqual(['k1', 'k3']);
    expect(partial.unavailable).toMatchObject([{ key: 'k2', reason: 'lock-held', holder: { fencingToken: blocker.fencingToken } }]);
    const none = await b.tryAcquireMany(['k4', 'k2']);
    expect(none.acquired).toEqual([]);
    expect(await b.inspect('k4')).toBeNull();
    await Promise.all([...partial.acquired, blocker].map((lock) => lock.release()));
    expect(await b.withSpaceLocks(['k1', 'k2'], async (locks) => locks.map((lock) => lock.key))).toEqual(['k1', 'k2']);
  });

  describe('lock sets on a backend with tryAcquireAll', () => {
    it('the memory backend grants all or none, each key with its own fencing token', async () => {
      const backend = new MemoryLockBackend();
      const owner = { ownerId: 'o', instanceId: 'i', hostname: 'h', pid: 1 };
      const request = (key: string, token: string) => ({ key, token, ttlMs: 5_000, mode: 'exclusive' as const, owner });
      expect(await backend.tryAcquire(request('b', 'other'))).toEqual({ acquired: true, fencingToken: 1 });
      const missed = await backend.tryAcquireAll(['a', 'b', 'c'].map((key) => request(key, 'mine')));
      expect(missed).toEqual({ acquired: false, held: [{ key: 'b', retryAfterMs: expect.any(Number) }] });
      expect(!missed.acquired && missed.held[0].retryAfterMs).toBeGreaterThan(4_000);
      expect(await backend.inspect('a')).toEqual([]);
      expect(await backend.release(request('b', 'other'))).toBe('released');
      expect(await backend.tryAcquireAll(['a', 'b', 'c'].map((key) => request(key, 'mine')))).toEqual({
        acquired: true,
        fencingTokens: [2, 3, 4],
      });
      expect((await backend.inspect('c'))[0]).toMatchObject({ ownerId: 'o', fencingToken: 4 });
    });

    it('a 3-key set is one backend call; a miss in another replica leaves nothing held', async () => {
      const store = new MemoryLockStore();
      const backend = new CountingBackend({ store });
      const locks = track(serviceOn(backend));
      const other = track(serviceOn(new MemoryLockBackend({ store })));
      expect(await locks.withSpaceLocks(['c', 'a', 'b'], (held) => held.map((lock) => lock.key))).toEqual(['a', 'b', 'c']);
      expect(backend.calls).toEqual({ tryAcquire: 0, tryAcquireAll: 1 });
      const blocker = await other.acquire('b');
      await expect(locks.acquireMany(['a', 'b', 'c'])).rejects.toMatchObject({ name: 'LockHeldError', key: 'b', reason: 'lock-held' });
      expect(backend.calls.tryAcquireAll).toBe(2);
      expect(locks.held()).toEqual([]);
      expect(await locks.inspect('a')).toBeNull();
      // Nothing of ours stays in the way of a single lock either.
      await (await locks.acquire('a')).release();
      await blocker.release();
    });

    it('a key busy in this process answers in-progress at once, or the set waits for its local slot', async () => {
      const backend = new CountingBackend();
      const locks = track(serviceOn(backend));
      const mine = await locks.acquire('k2');
      expect(await locks.withSpaceLocks(['k1', 'k2', 'k3'], () => 'ran')).toEqual({ skipped: 'in-progress' });
      expect(backend.calls.tryAcquireAll).toBe(0);
      // k1's local slot was given back.
      await (await locks.acquire('k1')).release();

      const waiting = locks.acquireMany(['k3', 'k2', 'k1'], { waitMs: 5_000 });
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(locks.held().map((lock) => lock.key)).toEqual(['k2']);
      await mine.release();
      const set = await waiting;
      expect(set.map((lock) => lock.key)).toEqual(['k1', 'k2', 'k3']);
      // The set waiter took the slot and asked the store for the whole set at once.
      expect(backend.calls.tryAcquireAll).toBe(1);
      expect(set[1].fencingToken).toBeGreaterThan(mine.fencingToken);
      await locks.releaseAll(set);
      expect(locks.held()).toEqual([]);
    });

    it('waits for a holder of another replica, then takes the whole set; times out holding nothing', async () => {
      const store = new MemoryLockStore();
      const locks = track(serviceOn(new MemoryLockBackend({ store })));
      const other = track(serviceOn(new MemoryLockBackend({ store })));
      const blocker = await other.acquire('s2');
      await expect(locks.acquireMany(['s1', 's2'], { waitMs: 50 })).rejects.toMatchObject({ name: 'LockTimeoutError', key: 's2' });
      expect(locks.held()).toEqual([]);
      const waiting = locks.withSpaceLocks(['s1', 's2', 's3'], (held) => held.map((lock) => lock.key), { waitMs: 5_000 });
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(await locks.inspect('s1')).toBeNull();
      await blocker.release();
      // Woken by the release: the fallback wake-up is bounded by the blocker's 30 s lease, beyond this test's timeout.
      expect(await waiting).toEqual(['s1', 's2', 's3']);
    });

    it('a store that fails gives LockBackendError and leaves no local slot taken', async () => {
      const backend = new StallableBackend();
      const locks = track(serviceOn(backend));
      backend.failing = true;
      await expect(locks.withSpaceLocks(['f1', 'f2'], () => 'ran')).rejects.toBeInstanceOf(LockBackendError);
      backend.failing = false;
      expect(await locks.withSpaceLocks(['f1', 'f2'], () => 'ran')).toBe('ran');
    });
  });

  it('list, held and inspect describe holders', async () => {
    const locks = track(serviceOn(new MemoryLockBackend(), { ownerId: 'worker-7' }));
    const one = await locks.acquire('jobs:1');
    const two = await locks.acquire('jobs:2', { ownerId: 'override' });
    await locks.acquire('other');
    const listed = await locks.list({ prefix: 'jobs:' });
    expect(listed.map((info) => [info.key, info.ownerId, info.pid])).toEqual([
      ['jobs:1', 'worker-7', process.pid],
      ['jobs:2', 'override', process.pid],
    ]);
    expect(locks.held().map((summary) => summary.key).sort()).toEqual(['jobs:1', 'jobs:2', 'other']);
    expect(await locks.list({ limit: 1 })).toHaveLength(1);
    await one.release();
    await two.release();
  });

  it('shutdown releases every lease and aborts its signal', async () => {
    const store = new MemoryLockStore();
    const locks = serviceOn(new MemoryLockBackend({ store }));
    const observer = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await locks.acquire('shutdown');
    await locks.beforeApplicationShutdown();
    expect(lock.signal.aborted).toBe(true);
    expect(await observer.inspect('shutdown')).toBeNull();
  });

  it('shutdown wakes local waiters with an error instead of leaving them hanging', async () => {
    const locks = serviceOn(new MemoryLockBackend());
    const holder = await locks.acquire('busy');
    const waiter = locks.acquire('busy', { waitMs: 60_000 });
    await locks.beforeApplicationShutdown();
    await expect(waiter).rejects.toThrow(/shutting down/);
    expect(holder.signal.aborted).toBe(true);
    expect(locks.held()).toEqual([]);
  });

  it('local hand-offs stop after maxLocalHandoffs, so a waiter of another replica gets its turn', async () => {
    const store = new MemoryLockStore();
    const busy = track(serviceOn(new MemoryLockBackend({ store }), { maxLocalHandoffs: 2 }));
    const other = track(serviceOn(new MemoryLockBackend({ store })));
    const order: string[] = [];
    const hold = (name: string) => async (): Promise<void> => {
      order.push(name);
      await new Promise((resolve) => setImmediate(resolve));
    };
    const first = await busy.acquire('fair');
    // Six more callers of this replica queue behind its holder, then one of the other replica waits.
    const local = Array.from({ length: 6 }, (_, index) => busy.withSpaceLock('fair', hold(`local${index}`), { waitMs: 10_000 }));
    const remote = other.withSpaceLock('fair', hold('remote'), { waitMs: 10_000 });
    await until(() => store.get('lock:fair') !== undefined);
    await first.release();
    await Promise.all([...local, remote]);
    // Unbounded hand-offs would serve all six local callers first.
    expect(order.indexOf('remote')).toBeGreaterThanOrEqual(0);
    expect(order.indexOf('remote')).toBeLessThanOrEqual(2);
  });

  it('extend(ttlMs) to a shorter lease moves the heartbeat with it', async () => {
    const store = new MemoryLockStore();
    const holder = track(serviceOn(new MemoryLockBackend({ store }), { ttlMs: 3_000 }));
    const rival = track(serviceOn(new MemoryLockBackend({ store })));
    const lock = await holder.acquire('shorter');
    expect(await lock.extend(300)).toBe(true);
    const startedAt = performance.now();
    await until(() => performance.now() - startedAt > 900);
    expect(lock.signal.aborted).toBe(false);
    expect(await rival.tryAcquire('shorter')).toBeNull();
    await lock.release();
  });

  it('an in-process backend is not bounded by backendTimeoutMs (no deadline timer on its calls)', async () => {
    const backend = new MemoryLockBackend();
    const tryAcquire = backend.tryAcquire.bind(backend);
    backend.tryAcquire = async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 120));
      return tryAcquire(request);
    };
    const locks = track(serviceOn(backend, { backendTimeoutMs: 50 }));
    const lock = await locks.acquire('slow-but-local');
    expect(lock.fencingToken).toBeGreaterThan(0);
    await lock.release();
  });

  it('a grant the store answers after the timeout is given back, and the local slot is free again', async () => {
    const backend = new RemoteMemoryBackend();
    const tryAcquire = backend.tryAcquire.bind(backend);
    let delayNext = true;
    // The store grants at once but its answer is late (a paused connection), once.
    backend.tryAcquire = async (request) => {
      const granted = await tryAcquire(request);
      if (delayNext) {
        delayNext = false;
        await new Promise((resolve) => setTimeout(resolve, 120));
      }
      return granted;
    };
    const locks = track(serviceOn(backend, { backendTimeoutMs: 50 }));
    await expect(locks.tryAcquire('late-grant')).rejects.toThrow(/tryAcquire timed out after 50 ms/);
    // Timed out for the caller, but the store holds the grant until its late answer is given back.
    expect(await backend.inspect('lock:late-grant')).toHaveLength(1);
    const startedAt = performance.now();
    const next = await locks.acquire('late-grant', { waitMs: 5_000 });
    // Freed by giving the orphan grant back (~70 ms on), not by its 30 s lease running out.
    expect(performance.now() - startedAt).toBeLessThan(2_000);
    expect(locks.held().map((held) => held.fencingToken)).toEqual([next.fencingToken]);
    await next.release();
    expect(locks.held()).toEqual([]);
    expect(await backend.inspect('lock:late-grant')).toEqual([]);
  });

  it.each([
    ['answers something that is not an outcome', 'LockBackendError', (backend: RemoteMemoryBackend): void => {
      backend.tryAcquire = async () => undefined as unknown as AcquireOutcome;
    }],
    ['answers without a promise', 'a miss', (backend: RemoteMemoryBackend): void => {
      backend.tryAcquire = (() => ({ acquired: false, retryAfterMs: 5 })) as unknown as LockBackend['tryAcquire'];
    }],
    ['throws synchronously', 'LockBackendError', (backend: RemoteMemoryBackend): void => {
      backend.tryAcquire = () => {
        throw new Error('not connected');
      };
    }],
  ])('a store that %s: the caller gets %s (never a throw), and the local slot is free again', async (_label, expected, breakOnce) => {
    const backend = new RemoteMemoryBackend();
    const tryAcquire = backend.tryAcquire.bind(backend);
    breakOnce(backend);
    const locks = track(serviceOn(backend, { backendTimeoutMs: 200 }));
    const first = locks.tryAcquire('broken');
    expect(first).toBeInstanceOf(Promise);
    const outcome = await first.catch((error: unknown) => error);
    if (expected === 'a miss') expect(outcome).toBeNull();
    else expect(outcome).toBeInstanceOf(LockBackendError);
    backend.tryAcquire = tryAcquire;
    const lock = await locks.tryAcquire('broken');
    expect(lock).not.toBeNull();
    await lock?.release();
  });

  it('a hand-over the store answers after we gave up is given back, not left blocking the key', async () => {
    const backend = new RemoteMemoryBackend();
    const handOver = backend.handOver.bind(backend);
    // The store does the hand-over at once but its answer is late (a paused connection).
    backend.handOver = async (from, to) => {
      const handed = await handOver(from, to);
      await new Promise((resolve) => setTimeout(resolve, 120));
      return handed;
    };
    const locks = track(serviceOn(backend, { backendTimeoutMs: 50 }));
    const first = await locks.acquire('late-handover');
    const waiter = locks.acquire('late-handover', { waitMs: 5_000 });
    await new Promise((resolve) => setImmediate(resolve));
    await expect(first.release()).resolves.toBe('not-owner');
    const startedAt = performance.now();
    const second = await waiter;
    // Freed by giving the orphan grant back (~120 ms), not by its 30 s lease running out.
    expect(performance.now() - startedAt).toBeLessThan(2_000);
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    await second.release();
  });

  it('a grant that arrives during shutdown is given back and never runs the work', async () => {
    const backend = new MemoryLockBackend();
    const tryAcquire = backend.tryAcquire.bind(backend);
    backend.tryAcquire = async (request) => {
      await new Promise((resolve) => setTimeout(resolve, 80));
      return tryAcquire(request);
    };
    const locks = serviceOn(backend);
    let ran = false;
    const attempt = locks.withSpaceLock('late', () => {
      ran = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await locks.beforeApplicationShutdown();
    await expect(attempt).rejects.toBeInstanceOf(LockShuttingDownError);
    expect(ran).toBe(false);
    expect(await backend.inspect('lock:late')).toEqual([]);
  });

  it('tryAcquireMany with partial releases what it took when the store fails midway', async () => {
    const backend = new StallableBackend();
    const tryAcquire = backend.tryAcquire.bind(backend);
    backend.tryAcquire = async (request) => {
      if (request.key === 'lock:p2') throw new Error('ECONNRESET');
      return tryAcquire(request);
    };
    const locks = track(serviceOn(backend));
    await expect(locks.tryAcquireMany(['p1', 'p2'], { partial: true })).rejects.toBeInstanceOf(LockBackendError);
    expect(locks.held()).toEqual([]);
    expect(await backend.inspect('lock:p1')).toEqual([]);
  });

  it('forceRelease refuses reasons that would forge log lines', async () => {
    const locks = track(serviceOn(new MemoryLockBackend()));
    await expect(locks.forceRelease('k', { reason: 'ok\nFAKE LOG LINE' })).rejects.toBeInstanceOf(LockOptionsError);
  });

  describe('bad input gets a typed error and leaves no lock', () => {
    // A live service for every case (the file's afterEach shuts the tracked ones down).
    let locks: SpaceLockService;
    let backend: MemoryLockBackend;
    beforeEach(() => {
      backend = new MemoryLockBackend();
      locks = track(serviceOn(backend));
    });
    afterEach(async () => {
      // Nothing was taken, and the service still works: a good call gets the lock.
      expect(locks.held()).toEqual([]);
      expect(await backend.list({ prefix: '', limit: 100 })).toEqual([]);
      await expect(locks.withSpaceLock('fine', async (lock) => lock.key)).resolves.toBe('fine');
    });
    it.each([
      ['empty', ''],
      ['not a string', 42],
      ['control characters', 'a\nb'],
      ['NUL', 'a\u0000b'],
      ['over 512 bytes', 'é'.repeat(257)],
    ])('key: %s', async (_label, key) => {
      await expect(locks.withSpaceLock(key as string, async () => 1)).rejects.toBeInstanceOf(InvalidLockKeyError);
      expect(locks.held()).toEqual([]);
    });
    it.each([
      [{ ttlMs: 0 }],
      [{ ttlMs: -5 }],
      [{ ttlMs: 1.5 }],
      [{ ttlMs: Infinity }],
      [{ ttlMs: Number.NaN }],
      [{ waitMs: -1 }],
      [{ mode: 'both' }],
      [{ limit: 0 }],
      [{ limit: -2 }],
      [{ limit: 2.5 }],
      [{ limit: 10_001 }],
      [{ limit: '3' }],
      [{ limit: Number.NaN }],
      [{ limit: 2, mode: 'shared' }],
      [{ limit: 1, mode: 'shared' }],
    ])('call options %p', async (options) => {
      await expect(locks.acquire('fine', options as never)).rejects.toBeInstanceOf(LockOptionsError);
      await expect(locks.withSpaceLock('fine', () => 1, options as never)).rejects.toBeInstanceOf(LockOptionsError);
      await expect(locks.withSpaceLocks(['fine', 'other'], () => 1, options as never)).rejects.toBeInstanceOf(LockOptionsError);
    });
    it('shared mode and limit on a backend without them', async () => {
      const plain = track(serviceOn(new RemoteMemoryBackend()));
      await expect(plain.acquire('fine', { mode: 'shared' })).rejects.toBeInstanceOf(LockNotSupportedError);
      await expect(plain.tryAcquire('fine', { limit: 2 })).rejects.toBeInstanceOf(LockNotSupportedError);
      // limit 1 is a plain lock: every backend has it.
      await expect(plain.withSpaceLock('fine', (lock) => lock.limit, { limit: 1 })).resolves.toBeUndefined();
    });
    it.each([
      [{ ttlMs: 0 }],
      [{ ttlMs: '100' }],
      [{ ttlMs: 1000, heartbeatMs: 1000 }],
      [{ ttlMs: 1000, heartbeatMs: 2000 }],
      [{ backend: 'etcd' }],
      [{ backend: {} }],
      [{ keyPrefix: 'a\tb' }],
      [{ ownerId: '' }],
    ])('module options %p', (options) => {
      expect(() => resolveLockOptions(options as never)).toThrow(LockOptionsError);
    });
  });
});
