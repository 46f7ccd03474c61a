import { Redis } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { RedisLockBackend, type LockOwner, type LockRequest } from '../../lib';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { RedisServer } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

const owner: LockOwner = { ownerId: 'set-taker', instanceId: 'instance-1', hostname: 'host-a', pid: 4242 };

describe('lock sets on a real redis-server: one script per set, all or none', () => {
  let server: RedisServer;
  let raw: Redis;
  let client: Redis;
  let backend: RedisLockBackend;
  const apps: LockApp[] = [];
  let tokens = 0;

  beforeAll(async () => {
    server = await RedisServer.start();
    raw = new Redis(server.url);
    client = new Redis(server.url);
    backend = new RedisLockBackend(client);
    await backend.init();
  });

  afterAll(async () => {
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
    await backend.close();
    client.disconnect();
    raw.disconnect();
    await server.destroy();
  });

  function request(key: string, who: LockOwner = owner): LockRequest {
    tokens += 1;
    return { key, token: `token-${tokens}`, ttlMs: 5_000, mode: 'exclusive', owner: who };
  }

  async function app(prefix: string): Promise<LockApp> {
    const created = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix, ttlMs: 5_000 });
    apps.push(created);
    return created;
  }

  it('tryAcquireAll takes 3 keys at once: lease, fence and metadata for each (scripts per call: redis-round-trips.spec)', async () => {
    const prefix = uniquePrefix('all');
    const keys = ['a', 'b', 'c'].map((name) => `${prefix}${name}`);
    const requests = keys.map((key) => request(key));
    const outcome = await backend.tryAcquireAll(requests);

    expect(outcome).toEqual({ acquired: true, fencingTokens: [expect.any(Number), expect.any(Number), expect.any(Number)] });
    for (const [index, key] of keys.entries()) {
      const stored = lockKeys(key);
      const fencingToken = outcome.acquired ? outcome.fencingTokens[index] : 0;
      expect(await raw.get(stored.lease)).toBe(requests[index].token);
      expect(await raw.pttl(stored.lease)).toBeGreaterThan(4_000);
      expect(await raw.get(stored.fence)).toBe(String(fencingToken));
      expect(await backend.inspect(key)).toMatchObject([{ key, ...owner, ttlMs: 5_000, fencingToken }]);
    }
  });

  it('one key held by another holder: nothing of the set is written, the held key and its lease are named', async () => {
    const prefix = uniquePrefix('none');
    const keys = ['a', 'b', 'c'].map((name) => `${prefix}${name}`);
    const other = await backend.tryAcquire(request(keys[1], { ...owner, ownerId: 'other' }));
    expect(other.acquired).toBe(true);
    const outcome = await backend.tryAcquireAll(keys.map((key) => request(key)));
    expect(outcome).toEqual({ acquired: false, held: [{ key: keys[1], retryAfterMs: expect.any(Number) }] });
    expect(!outcome.acquired && outcome.held[0].retryAfterMs).toBeGreaterThan(4_000);
    for (const key of [keys[0], keys[2]]) {
      // Not even the fencing counter moved: the script checks every lease before it writes.
      expect(await raw.exists(lockKeys(key).lease, lockKeys(key).fence, lockKeys(key).holder)).toBe(0);
    }
    expect(await backend.inspect(keys[1])).toMatchObject([{ ownerId: 'other', fencingToken: other.acquired && other.fencingToken }]);

    // A lease without expiry (written by something else) is named too, with no retry time.
    await raw.set(lockKeys(keys[2]).lease, 'foreign');
    const both = await backend.tryAcquireAll(keys.map((key) => request(key)));
    expect(both).toEqual({ acquired: false, held: [{ key: keys[1], retryAfterMs: expect.any(Number) }, { key: keys[2], retryAfterMs: null }] });
  });

  it('withSpaceLocks and acquireMany take a 3-key set all at once; nothing stays held on a miss', async () => {
    const prefix = uniquePrefix('service');
    const { locks } = await app(prefix);
    const { locks: rival } = await app(prefix);

    const tokens = await locks.withSpaceLocks(['c', 'a', 'b'], async (held) => {
      // All three are held in the store while the work runs.
      expect((await rival.list()).map((record) => record.key).sort()).toEqual(['a', 'b', 'c']);
      return held.map((lock) => [lock.key, lock.fencingToken]);
    });
    expect(tokens).toEqual([
      ['a', expect.any(Number)],
      ['b', expect.any(Number)],
      ['c', expect.any(Number)],
    ]);
    // Released in finally.
    expect(await locks.list()).toEqual([]);

    const blocker = await rival.acquire('b');
    expect(await locks.withSpaceLocks(['a', 'b', 'c'], () => 'ran')).toEqual({ skipped: 'lock-held' });
    await expect(locks.acquireMany(['a', 'b', 'c'])).rejects.toMatchObject({ name: 'LockHeldError', key: 'b' });
    const missed = await locks.tryAcquireMany(['c', 'b', 'a']);
    expect(missed.acquired).toEqual([]);
    expect(missed.unavailable).toMatchObject([{ key: 'b', reason: 'lock-held', holder: { fencingToken: blocker.fencingToken, local: false } }]);
    expect((await locks.list()).map((record) => record.key)).toEqual(['b']);
    expect(locks.held()).toEqual([]);
    await blocker.release();
  });

  it('a set waiting on a held key is woken by its release and then takes the whole set at once', async () => {
    const prefix = uniquePrefix('wait');
    const { locks } = await app(prefix);
    const { locks: rival } = await app(prefix);
    const blocker = await rival.acquire('y');
    const waiting = locks.acquireMany(['x', 'y', 'z'], { waitMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await locks.inspect('x')).toBeNull(); // nothing is held while waiting
    const releasedAt = performance.now();
    await blocker.release();
    const held = await waiting;
    expect(performance.now() - releasedAt).toBeLessThan(500);
    expect(held.map((lock) => lock.key)).toEqual(['x', 'y', 'z']);
    expect(held[1].fencingToken).toBeGreaterThan(blocker.fencingToken);
    await locks.releaseAll(held);

    const stays = await rival.acquire('z');
    const started = performance.now();
    await expect(locks.acquireMany(['x', 'z'], { waitMs: 150 })).rejects.toMatchObject({ name: 'LockTimeoutError', key: 'z' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(await locks.inspect('x')).toBeNull();
    await stays.release();
  });
});
