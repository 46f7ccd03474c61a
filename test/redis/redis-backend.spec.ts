import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import {
  LockBackend,
  LockOptionsError,
  RedisLockBackend,
  type ExtendRequest,
  type LockOwner,
  type LockRequest,
} from '../../lib';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { ACQUIRE, EXTEND } from '../../lib/backends/redis/redis-lock.scripts';
import { exited, spawnTs, waitForLine, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { FENCE_MARGIN_MS, fenceClockAt } from '../../lib/backends/redis/fencing-clock';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, redisBackendFixture, uniquePrefix } from './redis-test-app';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

const owner: LockOwner = { ownerId: 'tester', instanceId: 'instance-1', hostname: 'host-a', pid: 4242 };

describe('RedisLockBackend against a real redis-server', () => {
  let server: RedisServer;
  let raw: Redis;
  let client: Redis;
  let backend: RedisLockBackend;
  let tokens = 0;
  const fixture = redisBackendFixture({ extendChunkSize: 1_000 });
  beforeAll(() => ({ server, raw, client, backend } = fixture));

  function request(key: string, ttlMs = 5_000, who: LockOwner = owner): LockRequest {
    tokens += 1;
    return { key, token: `token-${tokens}`, ttlMs, mode: 'exclusive', owner: who };
  }

  async function grant(key: string, ttlMs?: number): Promise<LockRequest & { fencingToken: number }> {
    const req = request(key, ttlMs);
    const outcome = await backend.tryAcquire(req);
    if (!outcome.acquired) throw new Error(`${key} is held`);
    return { ...req, fencingToken: outcome.fencingToken };
  }

  it('acquires: lease with PX, fencing token on Redis\' clock kept for the lease plus a margin, metadata; contention reports the PTTL (scripts per call: redis-round-trips.spec)', async () => {
    const key = `${uniquePrefix('acquire')}job`;
    const first = await grant(key, 2_000);
    const second = await backend.tryAcquire(request(key));
    expect(second.acquired).toBe(false);
    expect(second.acquired === false && second.retryAfterMs).toBeGreaterThan(1_500);
    const keys = lockKeys(key);
    expect(await raw.get(keys.lease)).toBe(first.token);
    expect(await raw.pttl(keys.lease)).toBeLessThanOrEqual(2_000);
    expect(await raw.get(keys.fence)).toBe(String(first.fencingToken));
    // The fence key outlives the lease by the margin only: key count follows the locks in use.
    expect(await raw.pttl(keys.fence)).toBeGreaterThan(FENCE_MARGIN_MS);
    expect(await raw.pttl(keys.fence)).toBeLessThanOrEqual(2_000 + FENCE_MARGIN_MS);
    // The token is Redis' clock (same host here), exact as a JS number.
    expect(Number.isSafeInteger(first.fencingToken)).toBe(true);
    expect(Math.abs(first.fencingToken - fenceClockAt(Date.now()))).toBeLessThan(fenceClockAt(5_000) - fenceClockAt(0));
    const [record] = await backend.inspect(key);
    expect(record).toMatchObject({ key, ...owner, mode: 'exclusive', ttlMs: 2_000, fencingToken: first.fencingToken });
    expect(Math.abs(record.acquiredAt - Date.now())).toBeLessThan(5_000);
    expect(record.stale).toBeUndefined();
    // A lease someone stored without an expiry: taken, with no time to wait for.
    await raw.persist(keys.lease);
    expect(await backend.tryAcquire(request(key))).toEqual({ acquired: false, retryAfterMs: null });
  });


  it('falls back to EVAL when Redis lost its scripts (restart, fail-over), then uses EVALSHA again', async () => {
    await raw.script('FLUSH');
    const held = await grant(`${uniquePrefix('noscript')}job`);
    expect(await backend.release(held)).toBe('released');
    // EVAL loaded them again as a side effect.
    expect(await raw.script('EXISTS', ACQUIRE.sha, EXTEND.sha)).toEqual([1, 0]);
    await backend.init(); // load every script again, as at bootstrap
  });

  it('keeps the holder record as one packed string: any owner text round-trips, foreign data never throws', async () => {
    const key = `${uniquePrefix('record')}job`;
    const awkward: LockOwner = { ownerId: 'line\nbreak "quoted" \\ |pipe|', instanceId: '\n\n', hostname: 'h\u00e9', pid: 7 };
    const req = request(key, 4_000, awkward);
    const outcome = await backend.tryAcquire(req);
    expect(outcome.acquired).toBe(true);
    const keys = lockKeys(key);
    expect(await raw.type(keys.holder)).toBe('string');
    expect((await backend.inspect(key))[0]).toMatchObject({ ...awkward, ttlMs: 4_000 });
    // A release by another token must not delete the holder's record, even when the owner
    // text contains that token between newlines.
    expect(await backend.release({ key, token: 'break "quoted"', mode: 'exclusive' })).toBe('not-owner');
    expect(await raw.exists(keys.holder)).toBe(1);
    await raw.set(keys.holder, 'not a record');
    expect((await backend.inspect(key))[0]).toMatchObject({ key, ownerId: 'unknown', pid: 0 });
    expect(await backend.release(req)).toBe('released');
    expect(await raw.exists(keys.lease, keys.holder)).toBe(0);
  });
  it('release is compare-and-delete: released, then expired; another holder is not-owner', async () => {
    const key = `${uniquePrefix('release')}job`;
    const first = await grant(key);
    expect(await backend.release({ ...first, token: 'someone-else' })).toBe('not-owner');
    expect(await backend.release(first)).toBe('released');
    expect(await backend.release(first)).toBe('expired');
    const second = await grant(key);
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await backend.release(first)).toBe('not-owner');
    expect(await raw.get(lockKeys(key).lease)).toBe(second.token);
  });

  it('extends 2 500 leases in chunks, answering per lease', async () => {
    const prefix = uniquePrefix('extend');
    const leases: ExtendRequest[] = [];
    for (let index = 0; index < 2_500; index += 1) {
      // Granting 2 500 takes seconds on a busy machine: a lease long enough to outlive that.
      const held = await grant(`${prefix}${index}`, 30_000);
      leases.push({ key: held.key, token: held.token, mode: 'exclusive', ttlMs: 120_000 });
    }
    leases[7] = { ...leases[7], token: 'not-ours' };
    leases[2_400] = { ...leases[2_400], key: `${prefix}never-taken` };
    const answers = await backend.extend(leases);
    expect(answers.filter((answer) => !answer)).toHaveLength(2);
    expect(answers[7]).toBe(false);
    expect(answers[2_400]).toBe(false);
    expect(await raw.pttl(lockKeys(`${prefix}0`).lease)).toBeGreaterThan(100_000);
    expect(await raw.pttl(lockKeys(`${prefix}7`).lease)).toBeLessThanOrEqual(30_000);
    expect((await backend.inspect(`${prefix}1`))[0].ttlMs).toBe(120_000);
    expect(await raw.exists(lockKeys(`${prefix}never-taken`).holder)).toBe(0);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('hands over atomically: new token, next fencing token, fresh TTL, new metadata', async () => {
    const key = `${uniquePrefix('handover')}job`;
    const first = await grant(key);
    const next = request(key, 3_000, { ...owner, ownerId: 'next-owner' });
    const handed = await backend.handOver(first, next);
    expect(handed?.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(await backend.handOver(first, request(key))).toBeNull();
    expect(await backend.release(first)).toBe('not-owner');
    const [record] = await backend.inspect(key);
    expect(record).toMatchObject({ ownerId: 'next-owner', fencingToken: handed?.fencingToken, ttlMs: 3_000 });
    expect(await backend.release(next)).toBe('released');
  });

  it('marks a record whose lease expired without release as stale; the late release cleans it up', async () => {
    const prefix = uniquePrefix('stale');
    const gone = await grant(`${prefix}crashed`, 50);
    await until(async () => (await raw.exists(lockKeys(gone.key).lease)) === 0, 2_000, 'lease expired');
    const [record] = await backend.inspect(gone.key);
    expect(record.stale).toMatch(/expired/);
    expect(record.expiresInMs).toBe(0);
    expect((await backend.list({ prefix, limit: 10 })).map((listed) => listed.stale)).toEqual([record.stale]);
    expect(await backend.release(gone)).toBe('expired');
    expect(await backend.inspect(gone.key)).toEqual([]);
  });

  it('lists by prefix with SCAN, bounded by limit, round-tripping awkward keys', async () => {
    const prefix = uniquePrefix('list');
    const other = uniquePrefix('list-other');
    const awkward = ['a}b', '}x', '%7D', 'star*', 'q?[x]', 'back\\slash'];
    for (let index = 0; index < 25; index += 1) await grant(`${prefix}${index}`);
    for (const key of awkward) await grant(`${prefix}${key}`);
    await grant(`${other}0`);
    const all = await backend.list({ prefix, limit: 1_000 });
    expect(all).toHaveLength(31);
    expect(all.every((record) => record.key.startsWith(prefix))).toBe(true);
    expect(all.map((record) => record.key)).toEqual(expect.arrayContaining(awkward.map((key) => `${prefix}${key}`)));
    expect(await backend.list({ prefix, limit: 10 })).toHaveLength(10);
    expect(await backend.list({ prefix: `${prefix}}`, limit: 10 })).toEqual([expect.objectContaining({ key: `${prefix}}x` })]);
  });

  it('forceRelease compares the fencing token, moves the fence on and wakes waiters', async () => {
    const key = `${uniquePrefix('reap')}job`;
    const held = await grant(key);
    expect(await backend.forceRelease({ key, reason: 'test', expectFencingToken: held.fencingToken + 5 })).toEqual({
      outcome: 'changed-hands',
      current: expect.objectContaining({ fencingToken: held.fencingToken }),
    });
    const waiting = backend.waitForRelease(key, 10_000, new AbortController().signal);
    await until(async () => (await server.cli('pubsub', 'numsub', lockKeys(key).channel)).endsWith('1'), 2_000, 'subscribed');
    const reapedAt = performance.now();
    const reaped = await backend.forceRelease({ key, reason: 'test', expectFencingToken: held.fencingToken });
    const movedTo = Number(await raw.get(lockKeys(key).fence));
    expect(movedTo).toBeGreaterThan(held.fencingToken);
    expect(reaped).toEqual({ outcome: 'released', previous: expect.objectContaining({ ownerId: owner.ownerId }) });
    await waiting;
    expect(performance.now() - reapedAt).toBeLessThan(200);
    expect(await backend.forceRelease({ key, reason: 'test' })).toEqual({ outcome: 'not-held' });
    expect(await backend.release(held)).toBe('expired');
    expect((await grant(key)).fencingToken).toBeGreaterThan(movedTo);
  });

  it('reaping a crashed holder\'s leftover record reports it released, once', async () => {
    const key = `${uniquePrefix('reap-stale')}job`;
    const held = await grant(key);
    await server.cli('del', lockKeys(key).lease); // the lease ran out; the record stayed
    expect(await backend.forceRelease({ key, reason: 'test' })).toEqual({
      outcome: 'released',
      previous: expect.objectContaining({ fencingToken: held.fencingToken }),
    });
    expect(await backend.forceRelease({ key, reason: 'test' })).toEqual({ outcome: 'not-held' });
  });

  it('works on a client with its own ioredis keyPrefix (list strips it, waiters still wake)', async () => {
    const prefixed = new Redis(server.url, { keyPrefix: 'app1:' });
    const scoped = new RedisLockBackend(prefixed);
    try {
      const prefix = uniquePrefix('client-prefix');
      const req = request(`${prefix}job`);
      expect(await scoped.tryAcquire(req)).toMatchObject({ acquired: true });
      expect(await raw.get(`app1:${lockKeys(req.key).lease}`)).toBe(req.token);
      expect((await scoped.list({ prefix, limit: 10 })).map((record) => record.key)).toEqual([req.key]);
      expect(await backend.list({ prefix, limit: 10 })).toEqual([]);
      const waiting = scoped.waitForRelease(req.key, 5_000, new AbortController().signal);
      await until(async () => (await server.cli('pubsub', 'numsub', `app1:${lockKeys(req.key).channel}`)).endsWith('1'), 2_000, 'subscribed');
      const releasedAt = performance.now();
      expect(await scoped.release(req)).toBe('released');
      await waiting;
      expect(performance.now() - releasedAt).toBeLessThan(200);
    } finally {
      await scoped.close();
      prefixed.disconnect();
    }
  });

  describe('waitForRelease', () => {
    it('shares one subscriber connection and unsubscribes when the last waiter leaves', async () => {
      const prefix = uniquePrefix('subscribe');
      const [a, b] = [await grant(`${prefix}a`), await grant(`${prefix}b`)];
      const aborts = new AbortController();
      const waits = [a, a, b].map((held) => backend.waitForRelease(held.key, 10_000, aborts.signal));
      const numsub = async (key: string): Promise<string> => (await server.cli('pubsub', 'numsub', lockKeys(key).channel)).split('\n')[1];
      await until(async () => (await numsub(a.key)) === '1' && (await numsub(b.key)) === '1', 2_000, 'subscribed');
      const subscribers = (await server.cli('client', 'list', 'type', 'pubsub')).split('\n').filter(Boolean);
      expect(subscribers).toHaveLength(1);
      await backend.release(a);
      await Promise.all(waits.slice(0, 2));
      await until(async () => (await numsub(a.key)) === '0', 2_000, 'a unsubscribed');
      expect(await numsub(b.key)).toBe('1');
      aborts.abort();
      await waits[2];
      await until(async () => (await numsub(b.key)) === '0', 2_000, 'b unsubscribed');
    });

    it('never hangs on a lost message: resolves on its timeout', async () => {
      const held = await grant(`${uniquePrefix('timeout')}job`);
      const started = performance.now();
      await backend.waitForRelease(held.key, 150, new AbortController().signal);
      expect(performance.now() - started).toBeGreaterThanOrEqual(140);
      expect(await backend.release(held)).toBe('released');
    });

    it('resolves at once when the release happened before the subscription', async () => {
      const held = await grant(`${uniquePrefix('missed')}job`);
      await backend.release(held);
      const started = performance.now();
      await backend.waitForRelease(held.key, 5_000, new AbortController().signal);
      expect(performance.now() - started).toBeLessThan(500);
    });
  });

  describe('bootstrap probe of maxmemory-policy', () => {
    let warn: jest.SpyInstance;
    let debug: jest.SpyInstance;
    beforeEach(() => {
      warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      debug = jest.spyOn(Logger.prototype, 'debug').mockImplementation(() => undefined);
    });
    afterEach(async () => {
      warn.mockRestore();
      debug.mockRestore();
      await raw.config('SET', 'maxmemory-policy', 'noeviction');
    });

    it('warns once when keys may be evicted, and not with noeviction', async () => {
      await raw.config('SET', 'maxmemory-policy', 'noeviction');
      await new RedisLockBackend(client).init();
      expect(warn).not.toHaveBeenCalled();
      await raw.config('SET', 'maxmemory-policy', 'volatile-lru');
      await new RedisLockBackend(client).init();
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/volatile-lru.*noeviction/);
      await new RedisLockBackend(client, { warnOnEviction: false }).init();
      expect(warn).toHaveBeenCalledTimes(1);
    });

    it('tolerates CONFIG being disabled', async () => {
      const locked = await RedisServer.start(['--rename-command', 'CONFIG', '']);
      const locker = new Redis(locked.url);
      try {
        await expect(new RedisLockBackend(locker).init()).resolves.toBeUndefined();
        expect(warn).not.toHaveBeenCalled();
        expect(String(debug.mock.calls[0]?.[0])).toMatch(/Could not read maxmemory-policy/);
      } finally {
        locker.disconnect();
        await locked.destroy();
      }
    });
  });

  describe('through LockModule', () => {
    it('shared mode: readers of two replicas hold together, a writer gets in after them', async () => {
      const prefix = uniquePrefix('shared');
      const replicas = await Promise.all([0, 1, 2].map(() => lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix })));
      try {
        const [first, second] = await Promise.all(replicas.slice(0, 2).map(({ locks }) => locks.acquire('job', { mode: 'shared' })));
        expect(second.fencingToken).not.toBe(first.fencingToken);
        expect(await replicas[2].locks.tryAcquire('job')).toBeNull();
        expect((await replicas[2].locks.inspectAll('job')).map((record) => record.mode)).toEqual(['shared', 'shared']);
        await Promise.all([first.release(), second.release()]);
        const writer = await replicas[2].locks.acquire('job');
        expect(writer.fencingToken).toBeGreaterThan(Math.max(first.fencingToken, second.fencingToken));
        await writer.release();
      } finally {
        await Promise.all(replicas.map(({ app }) => app.close()));
      }
    });

    it('heartbeats keep a short lease alive well past its TTL; extend(ttl) is written through', async () => {
      const prefix = uniquePrefix('heartbeat');
      const { app, locks } = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix, ttlMs: 300 });
      try {
        const lock = await locks.acquire('job');
        const leaseKey = lockKeys(`${prefix}job`).lease;
        const started = performance.now();
        // Watch Redis across 4 TTLs: the lease must never be missing and stay ours.
        await until(async () => {
          expect(await raw.get(leaseKey)).toBe(lock.token);
          return performance.now() - started > 1_200;
        }, 3_000);
        expect(lock.signal.aborted).toBe(false);
        expect(await lock.extend(5_000)).toBe(true);
        expect(await raw.pttl(leaseKey)).toBeGreaterThan(4_000);
        expect((await locks.inspect('job'))?.ttlMs).toBe(5_000);
        expect(await lock.release()).toBe('released');
      } finally {
        await app.close();
      }
    });

    it('rejects no connection source and several at once', async () => {
      await expect(lockApp({ backend: 'redis', redis: {} })).rejects.toBeInstanceOf(LockOptionsError);
      await expect(lockApp({ backend: 'redis', redis: { url: server.url, client } })).rejects.toThrow(/one connection source/);
      await expect(lockApp({ backend: 'redis', redis: { url: server.url, extendChunkSize: 0 } })).rejects.toThrow(/extendChunkSize/);
      await expect(lockApp({ backend: 'redis', redis: { client, connection: { db: 1 } } })).rejects.toThrow(/client and connection/);
    });

    it('does not close a client it was given, closes one it created', async () => {
      const given = new Redis(server.url);
      const mine = await lockApp({ backend: 'redis', redis: { client: given }, keyPrefix: uniquePrefix('given') });
      await mine.app.close();
      expect(await given.ping()).toBe('PONG');
      given.disconnect();

      const owning = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: uniquePrefix('owned') });
      const created = owning.app.get<RedisLockBackend>(LockBackend).client;
      expect(created.status).toBe('ready');
      await owning.app.close();
      await until(() => created.status === 'end', 2_000, 'owned client closed');
    });

    it('an app on the memory backend never loads ioredis or @nestjs-labs/nestjs-ioredis', async () => {
      const child = spawnTs(join(__dirname, 'fixtures', 'memory-only.ts'));
      const [, loaded] = await waitForLine(child, /^loaded (.*)$/, 30_000);
      expect(JSON.parse(loaded)).toEqual([]);
      expect(await exited(child)).toBe(0);
    }, PROCESS_TEST_TIMEOUT_MS);
  });
});
