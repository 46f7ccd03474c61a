import type { Redis } from 'ioredis';
import type { RedisLockBackend } from '../../lib/backends/redis/redis-lock.backend';
import { lockKeys } from '../../lib/backends/redis/redis-lock.scripts';
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

  function request(key: string, ticket?: string): LockRequest {
    tokens += 1;
    const queue = ticket === undefined ? undefined : { ticket, waitMs: 5_000 };
    return { key, token: `token-${tokens}`, ttlMs: 5_000, mode: 'exclusive', owner, queue };
  }

  it('a release keeps the lock for the first queued ticket, then the next; nobody else gets in', async () => {
    const key = `${uniquePrefix('fifo')}job`;
    const holder = request(key);
    expect((await backend.tryAcquire(holder)).acquired).toBe(true);
    expect((await backend.tryAcquire(request(key, 'first'))).acquired).toBe(false);
    expect((await backend.tryAcquire(request(key, 'second'))).acquired).toBe(false);
    // Asking again keeps the place instead of queueing twice.
    expect((await backend.tryAcquire(request(key, 'first'))).acquired).toBe(false);
    expect(await raw.lrange(lockKeys(key).queue, 0, -1)).toEqual(['first', 'second']);

    expect(await backend.release(holder)).toBe('released');
    const greedy = await backend.tryAcquire(request(key));
    expect(greedy.acquired).toBe(false);
    expect(!greedy.acquired && greedy.retryAfterMs).toBeLessThanOrEqual(150);
    expect((await backend.tryAcquire(request(key, 'second'))).acquired).toBe(false);
    const first = request(key, 'first');
    const granted = await backend.tryAcquire(first);
    expect(granted.acquired).toBe(true);

    expect(await backend.release(first)).toBe('released');
    expect((await backend.tryAcquire(request(key, 'late'))).acquired).toBe(false);
    const second = request(key, 'second');
    const next = await backend.tryAcquire(second);
    expect(next).toEqual({ acquired: true, fencingToken: granted.acquired ? granted.fencingToken + 1 : -1 });
    expect(await backend.release(second)).toBe('released');
    expect(await raw.get(lockKeys(key).lease)).toBe('queued:late');
  });

  it('a waiter that gives up passes a turn kept for it on at once; the queue key goes away', async () => {
    const key = `${uniquePrefix('leave')}job`;
    const holder = request(key);
    await backend.tryAcquire(holder);
    await backend.tryAcquire(request(key, 'gives-up'));
    await backend.tryAcquire(request(key, 'stays'));
    await backend.release(holder);
    expect(await raw.get(lockKeys(key).lease)).toBe('queued:gives-up');
    await backend.leaveQueue(key, 'gives-up');
    expect(await raw.get(lockKeys(key).lease)).toBe('queued:stays');
    const stays = request(key, 'stays');
    expect((await backend.tryAcquire(stays)).acquired).toBe(true);
    await backend.release(stays);
    expect(await raw.exists(lockKeys(key).lease, lockKeys(key).queue)).toBe(0);
  });

  it('a waiter that died in the queue costs one reservation, then anyone gets the lock', async () => {
    const key = `${uniquePrefix('dead')}job`;
    const holder = request(key);
    await backend.tryAcquire(holder);
    await backend.tryAcquire(request(key, 'crashed'));
    await backend.release(holder);
    const pttl = await raw.pttl(lockKeys(key).lease);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(150);
    await new Promise((resolve) => setTimeout(resolve, pttl + 20));
    expect((await backend.tryAcquire(request(key))).acquired).toBe(true);
  });

  it('uncontended calls never touch a queue', async () => {
    const key = `${uniquePrefix('plain')}job`;
    const plain = request(key);
    await backend.tryAcquire(plain);
    await backend.release(plain);
    expect(await raw.exists(lockKeys(key).lease, lockKeys(key).queue)).toBe(0);
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
