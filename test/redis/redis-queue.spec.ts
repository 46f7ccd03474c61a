import { Redis } from 'ioredis';
import { RedisLockBackend } from '../../lib/backends/redis/redis-lock.backend';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import type { LockOwner, LockRequest } from '../../lib/lock-backend.interface';
import type { RedisServer } from '../support/redis-server';
import { lockApp, redisBackendFixture, uniquePrefix, type LockApp } from './redis-test-app';

const owner: LockOwner = { ownerId: 'queue-test', instanceId: 'i-1', hostname: 'host', pid: 1 };

describe('Redis waiters queue in arrival order (real redis-server)', () => {
  let server: RedisServer;
  let raw: Redis;
  let backend: RedisLockBackend;
  let tokens = 0;
  const fixture = redisBackendFixture({ queueReservationMs: 150 });
  beforeAll(() => ({ server, raw, backend } = fixture));

  /** A waiting caller's attempt uses its wait's token on every attempt; others a fresh one. */
  function request(key: string, waiter?: string): LockRequest {
    tokens += 1;
    return { key, token: waiter ?? `token-${tokens}`, ttlMs: 5_000, mode: 'exclusive', owner, queue: waiter ? { waitMs: 5_000 } : undefined };
  }

  it('a release passes the lock to the first queued waiter, then the next; nobody else gets in', async () => {
    const key = `${uniquePrefix('fifo')}job`;
    const keys = lockKeys(key);
    const holder = request(key);
    const granted = await backend.tryAcquire(holder);
    expect((await backend.tryAcquire(request(key, 'first'))).acquired).toBe(false);
    expect((await backend.tryAcquire(request(key, 'second'))).acquired).toBe(false);
    // Asking again keeps the place instead of queueing twice.
    expect((await backend.tryAcquire(request(key, 'first'))).acquired).toBe(false);
    expect(await raw.lrange(keys.queue, 0, -1)).toEqual(['first', 'second']);

    const passed = backend.waitForRelease(key, 2_000, new AbortController().signal, 'first');
    await waitFor(async () => (await raw.pubsub('NUMSUB', keys.channel))[1] === 1);
    expect(await backend.release(holder)).toBe('released');
    const fence = (await passed)?.fencingToken;
    expect(fence).toBeGreaterThan(granted.acquired ? granted.fencingToken : Infinity);
    expect(await raw.get(keys.lease)).toBe('first');
    expect((await backend.inspect(key))[0]).toMatchObject({ fencingToken: fence, ownerId: 'queue-test' });
    expect((await backend.tryAcquire(request(key))).acquired).toBe(false);
    expect((await backend.tryAcquire(request(key, 'second'))).acquired).toBe(false);
    // The first waiter asking (again) is told it holds the lease, with the same fencing token.
    expect(await backend.tryAcquire(request(key, 'first'))).toEqual({ acquired: true, fencingToken: fence });

    expect(await backend.release(request(key, 'first'))).toBe('released');
    expect(await raw.get(keys.lease)).toBe('second');
    expect(await backend.release(request(key, 'second'))).toBe('released');
    expect(await raw.exists(keys.lease, keys.queue, keys.waiting)).toBe(0);
  });

  it('a waiter that gives up passes a lease already given to it on at once; the queue keys go away', async () => {
    const key = `${uniquePrefix('leave')}job`;
    const keys = lockKeys(key);
    const holder = request(key);
    await backend.tryAcquire(holder);
    await backend.tryAcquire(request(key, 'gives-up'));
    await backend.tryAcquire(request(key, 'stays'));
    await backend.release(holder);
    expect(await raw.get(keys.lease)).toBe('gives-up');
    await backend.leaveQueue(key, 'gives-up');
    expect(await raw.get(keys.lease)).toBe('stays');
    expect((await backend.inspect(key))[0].stale).toBeUndefined();
    await backend.release(request(key, 'stays'));
    expect(await raw.exists(keys.lease, keys.queue, keys.waiting, keys.holder)).toBe(0);
  });

  it('a waiter not seen for a while only gets the lock kept for it; if it died, anyone gets it after that', async () => {
    const key = `${uniquePrefix('dead')}job`;
    const keys = lockKeys(key);
    const holder = request(key);
    await backend.tryAcquire(holder);
    await backend.tryAcquire(request(key, 'crashed'));
    // As if Redis last saw it long ago.
    const entry = (await raw.hget(keys.waiting, 'crashed')) as string;
    await raw.hset(keys.waiting, 'crashed', entry.replace(/^\d+/, '1000'));
    await backend.release(holder);
    expect(await raw.get(keys.lease)).toBe('queued:crashed');
    const pttl = await raw.pttl(keys.lease);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(150);
    expect((await backend.tryAcquire(request(key))).acquired).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, pttl + 20));
    expect((await backend.tryAcquire(request(key))).acquired).toBe(true);
  });

  it('uncontended calls never touch a queue', async () => {
    const key = `${uniquePrefix('plain')}job`;
    const plain = request(key);
    await backend.tryAcquire(plain);
    await backend.release(plain);
    expect(await raw.exists(lockKeys(key).lease, lockKeys(key).queue, lockKeys(key).waiting)).toBe(0);
  });

  describe('between two replicas (separate connections)', () => {
    let a: LockApp;
    let b: LockApp;
    const prefix = uniquePrefix('replicas');

    beforeAll(async () => {
      a = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix });
      b = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix });
    });
    afterAll(async () => {
      await a.app.close();
      await b.app.close();
    });

    it('a replica that releases and asks again at once goes behind the waiting one', async () => {
      const order: string[] = [];
      const held = await a.locks.acquire('job');
      const waiting = b.locks.acquire('job', { waitMs: 5_000 }).then(async (lock) => {
        order.push('b');
        await lock.release();
        return lock.fencingToken;
      });
      // b is queued once its first attempt came back empty-handed.
      await waitFor(async () => (await raw.llen(lockKeys(`${prefix}job`).queue)) === 1);
      await held.release();
      const again = await a.locks.acquire('job', { waitMs: 5_000 });
      order.push('a');
      expect(order).toEqual(['b', 'a']);
      expect(again.fencingToken).toBeGreaterThan(await waiting);
      await again.release();
    });

    it('a waiter whose queueing attempt timed out leaves the queue, so no lease is passed to it', async () => {
      /** The store queues the waiter, but its answer comes after backendTimeoutMs. */
      class SlowAnswer extends RedisLockBackend {
        slowOnce = false;
        override async tryAcquire(request: LockRequest) {
          const outcome = await super.tryAcquire(request);
          if (this.slowOnce) {
            this.slowOnce = false;
            await new Promise((resolve) => setTimeout(resolve, 300));
          }
          return outcome;
        }
      }
      const slowClient = new Redis(server.url);
      const slow = new SlowAnswer(slowClient);
      const c = await lockApp({ backend: slow, keyPrefix: prefix, backendTimeoutMs: 100 });
      try {
        const held = await a.locks.acquire('slow');
        slow.slowOnce = true;
        await expect(c.locks.acquire('slow', { waitMs: 5_000 })).rejects.toThrow(/timed out/);
        await waitFor(async () => (await raw.exists(lockKeys(`${prefix}slow`).queue)) === 0);
        await held.release();
        // Free at once for anyone: not passed to the waiter that is gone.
        const next = await b.locks.acquire('slow');
        await next.release();
      } finally {
        await c.app.close();
        slowClient.disconnect();
      }
    });

    it('a waiter that times out leaves the queue', async () => {
      const held = await a.locks.acquire('timeout');
      await expect(b.locks.acquire('timeout', { waitMs: 50 })).rejects.toThrow(/timed out|waited/i);
      await waitFor(async () => (await raw.exists(lockKeys(`${prefix}timeout`).queue)) === 0);
      await held.release();
      expect(await raw.exists(lockKeys(`${prefix}timeout`).lease)).toBe(0);
    });
  });
});

async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  const giveUpAt = Date.now() + 5_000;
  while (!(await condition())) {
    if (Date.now() > giveUpAt) throw new Error('condition not met within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
