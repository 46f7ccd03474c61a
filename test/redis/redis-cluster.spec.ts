import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClusterModule, ClusterService } from '@nestjs-labs/nestjs-ioredis';
import { Cluster } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { LockBackend, LockModule, SpaceLockService, type HeldLock, type LockRequest } from '../../lib';
import type { RedisLockBackend } from '../../lib/backends/redis/redis-lock.backend';
import { clusterSlot, lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { RedisCluster, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';
import { PROCESS_TEST_TIMEOUT_MS } from '../support/processes';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

describe('Redis backend on a real 3-master Redis Cluster', () => {
  let cluster: RedisCluster;
  const apps: LockApp[] = [];

  beforeAll(async () => {
    cluster = await RedisCluster.start(3);
  }, PROCESS_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
    await cluster?.destroy();
  });

  async function replica(prefix: string): Promise<LockApp> {
    const created = await lockApp({ backend: 'redis', redis: { cluster: { nodes: cluster.nodes } }, keyPrefix: prefix, ttlMs: 5_000 });
    apps.push(created);
    return created;
  }

  it('runs every script on keys spread over all masters without CROSSSLOT', async () => {
    const prefix = uniquePrefix('cluster');
    const { app, locks } = await replica(prefix);
    // Hash-tag edge cases too: `}` would end a tag early, `{` nests, `%` is the escape character.
    const keys = [...Array.from({ length: 30 }, (_, index) => `job:${index}`), '}starts-with-brace', 'a{b}c', '100%'];
    const held: HeldLock[] = [];
    for (const key of keys) held.push(await locks.acquire(key));

    // The keys really landed on every master.
    const sizes = await Promise.all(cluster.servers.map(async (server) => Number(await server.cli('dbsize'))));
    expect(sizes.every((size) => size > 0)).toBe(true);

    const backend = app.get<RedisLockBackend>(LockBackend);
    const stillOurs = await backend.extend(held.map((lock) => ({ key: `${prefix}${lock.key}`, token: lock.token, mode: 'exclusive', ttlMs: 6_000 })));
    expect(stillOurs).toEqual(keys.map(() => true));

    const listed = await locks.list({ limit: 1_000 });
    expect(listed.map((record) => record.key).sort()).toEqual([...keys].sort());
    expect((await locks.inspect('}starts-with-brace'))?.fencingToken).toBe(held[30].fencingToken);

    const reaped = await locks.forceRelease('a{b}c', { reason: 'cluster test', expectFencingToken: held[31].fencingToken });
    expect(reaped.outcome).toBe('released');
    expect(await Promise.all(held.map((lock) => lock.release()))).toEqual(keys.map((key) => (key === 'a{b}c' ? 'expired' : 'released')));
    expect(await locks.list({ limit: 1_000 })).toEqual([]);
  });

  it('shared locks and permits: every holder-set script on keys spread over all masters, one slot per lock', async () => {
    const prefix = uniquePrefix('cluster-holders');
    const { app } = await replica(prefix);
    const backend = app.get<RedisLockBackend>(LockBackend);
    const owner = { ownerId: 'holders', instanceId: 'i', hostname: 'h', pid: 1 };
    let tokens = 0;
    const ask = (key: string, extra: Partial<LockRequest>): LockRequest => {
      tokens += 1;
      return { key: `${prefix}${key}`, token: `c${tokens}`, ttlMs: 5_000, mode: 'exclusive', owner, ...extra };
    };
    const keys = Array.from({ length: 12 }, (_, index) => `job:${index}`);
    const slots = new Set(keys.map((key) => clusterSlot(lockKeys(`${prefix}${key}`).lease)));
    expect(slots.size).toBeGreaterThan(3);
    const held: LockRequest[] = [];
    for (const [index, key] of keys.entries()) {
      const extra: Partial<LockRequest> = index % 2 === 0 ? { mode: 'shared' } : { limit: 2 };
      for (const request of [ask(key, extra), ask(key, extra)]) {
        expect(await backend.tryAcquire(request)).toMatchObject({ acquired: true });
        held.push(request);
      }
      // Full (permits) or a writer queued (readers): the next one waits, pushed on release.
      const writer = ask(key, { token: `w-${key}`, queue: { waitMs: 5_000 } });
      expect(await backend.tryAcquire(index % 2 === 0 ? writer : { ...writer, ...extra })).toMatchObject({ acquired: false });
    }
    expect(await backend.extend(held.map((request) => ({ ...request, ttlMs: 6_000 })))).toEqual(held.map(() => true));
    const leaving = ask(keys[1], { limit: 2, token: 'leaving', queue: { waitMs: 5_000 } });
    expect(await backend.tryAcquire(leaving)).toMatchObject({ acquired: false });
    await backend.leaveQueue(leaving.key, leaving.token);
    const listed = await backend.list({ prefix, limit: 1_000 });
    expect(listed).toHaveLength(held.length);
    const reaped = await backend.forceRelease({ key: held[0].key, reason: 'cluster test', expectFencingToken: listed.find((record) => record.key === held[0].key)?.fencingToken });
    expect(reaped.outcome).toBe('released');
    // Waiters of even keys (writers) and odd keys (permits) get their grant pushed over sharded pub/sub.
    const passed = keys.map((key) => backend.waitForRelease(`${prefix}${key}`, 5_000, new AbortController().signal, `w-${key}`));
    const shardSubscribers = async (): Promise<number> => {
      const replies = await Promise.all(cluster.servers.map((server) => server.cli('pubsub', 'shardchannels', `{${prefix}*`)));
      return replies.map((reply) => reply.split('\n').filter(Boolean).length).reduce((sum, count) => sum + count, 0);
    };
    await until(async () => (await shardSubscribers()) === keys.length, 5_000, 'every waiter subscribed to its shard');
    await Promise.all(held.map((request) => backend.release(request)));
    expect((await Promise.all(passed)).every((lease) => (lease?.fencingToken ?? 0) > 0)).toBe(true);
    for (const [index, key] of keys.entries()) {
      const waiter = ask(key, { token: `w-${key}`, ...(index % 2 === 0 ? {} : { limit: 2 }) });
      expect(await backend.release(waiter)).toBe('released');
    }
    expect(await backend.list({ prefix, limit: 1_000 })).toEqual([]);
  });

  it('hands a lease to a local waiter and wakes a waiter of another replica over sharded pub/sub (Redis >= 7)', async () => {
    const prefix = uniquePrefix('cluster-wait');
    const one = await replica(prefix);
    const two = await replica(prefix);
    const first = await one.locks.acquire('job');
    // Local waiter: served by the handOver script.
    const local = one.locks.acquire('job', { waitMs: 5_000 });
    await first.release();
    const handed = await local;
    expect(handed.fencingToken).toBeGreaterThan(first.fencingToken);

    // Remote waiter: woken by the release published from inside the script.
    const remote = two.locks.acquire('job', { waitMs: 5_000 });
    const channel = `{${prefix}job}:released`;
    const subscribers = async (kind: 'numsub' | 'shardnumsub'): Promise<number> =>
      (await Promise.all(cluster.servers.map((server) => server.cli('pubsub', kind, channel))))
        .map((reply) => Number(reply.split('\n').pop()))
        .reduce((sum, count) => sum + count, 0);
    expect(one.app.get<RedisLockBackend>(LockBackend).publishMode).toBe('sharded');
    await until(async () => (await subscribers('shardnumsub')) === 1, 5_000, 'remote waiter subscribed to its shard');
    expect(await subscribers('numsub')).toBe(0);
    const releasedAt = performance.now();
    await handed.release();
    const next = await remote;
    expect(performance.now() - releasedAt).toBeLessThan(200);
    expect(next.fencingToken).toBeGreaterThan(handed.fencingToken);
    await next.release();
  });

  it('takes the Cluster of @nestjs-labs/nestjs-ioredis by clusterNamespace; shutdown releases before ClusterModule quits it', async () => {
    const prefix = uniquePrefix('cluster-namespace');
    @Module({
      imports: [
        ClusterModule.forRoot({ readyLog: false, errorLog: false, config: { namespace: 'locks', nodes: cluster.nodes } }),
        LockModule.forRoot({ backend: 'redis', redis: { clusterNamespace: 'locks' }, keyPrefix: prefix }),
      ],
    })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
    await app.init();
    const client = app.get(ClusterService).getOrThrow('locks');
    expect(app.get<RedisLockBackend>(LockBackend).client).toBe(client);
    const locks = app.get(SpaceLockService);
    // Keys on several masters, each script on its own slot.
    const held = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((key) => locks.acquire(key)));
    for (const lock of held) expect(await client.get(lockKeys(`${prefix}${lock.key}`).lease)).toBe(lock.token);
    await app.close();
    for (const lock of held) expect(lock.signal.aborted).toBe(true);
    // Our leases went before ClusterModule's own shutdown hook quit its client.
    const check = new Cluster(cluster.nodes);
    try {
      for (const lock of held) expect(await check.exists(lockKeys(`${prefix}${lock.key}`).lease)).toBe(0);
    } finally {
      check.disconnect();
    }
    await until(() => client.status === 'end', 5_000, 'ClusterModule client closed');
  });

  it('computes the slot of a key as CLUSTER KEYSLOT does', async () => {
    const keys = ['job:1', '{job:1}', '{job:1}:fence', 'app:{x}', 'a{}b', 'a{b', '}a{b}', 'ünïcødé', lockKeys('}brace').lease, ''];
    const server = cluster.servers[0];
    for (const key of keys) expect([key, clusterSlot(key)]).toEqual([key, Number(await server.cli('cluster', 'keyslot', key))]);
  });

  describe('lock sets spanning slots', () => {
    const slotOf = (storeKey: string): number => clusterSlot(lockKeys(storeKey).lease);
    let tokens = 0;
    const request = (key: string): LockRequest => ({
      key,
      token: `set-token-${(tokens += 1)}`,
      ttlMs: 5_000,
      mode: 'exclusive',
      owner: { ownerId: 'set-taker', instanceId: 'i', hostname: 'h', pid: 1 },
    });

    /** `job:0`, a key in the same slot as `job:0`, and `other`: two slot groups. */
    function spanningKeys(prefix: string): string[] {
      let partner = 1;
      while (slotOf(`${prefix}job:${partner}`) !== slotOf(`${prefix}job:0`)) partner += 1;
      return ['job:0', `job:${partner}`, 'other'];
    }

    it('one script per slot group; every key granted with its own fencing token', async () => {
      const prefix = uniquePrefix('cluster-set');
      const { app } = await replica(prefix);
      const backend = app.get<RedisLockBackend>(LockBackend);
      const client = backend.client as Cluster;
      const keys = spanningKeys(prefix).map((key) => `${prefix}${key}`);
      expect(new Set(keys.map(slotOf)).size).toBe(2);
      // Warm up: the client learns the slot map and the nodes cache the script.
      const first = keys.map(request);
      const warm = await backend.tryAcquireAll(first);
      expect(warm.acquired).toBe(true);
      await Promise.all(first.map((granted) => backend.release(granted)));

      const spy = jest.spyOn(client, 'sendCommand');
      const outcome = await backend.tryAcquireAll(keys.map(request));
      const sent = spy.mock.calls.map(([command]) => command.name);
      spy.mockRestore();
      expect(sent).toEqual(['evalsha', 'evalsha']);
      if (!outcome.acquired || !warm.acquired) throw new Error('the set was not granted');
      for (const [index, key] of keys.entries()) {
        expect(outcome.fencingTokens[index]).toBeGreaterThan(warm.fencingTokens[index]);
        expect(await backend.inspect(key)).toMatchObject([{ key, ownerId: 'set-taker', fencingToken: outcome.fencingTokens[index] }]);
      }
    });

    it('rolls back the slot groups already granted when a later one is held', async () => {
      const prefix = uniquePrefix('cluster-rollback');
      const { app, locks } = await replica(prefix);
      const rival = await replica(prefix);
      const backend = app.get<RedisLockBackend>(LockBackend);
      const keys = spanningKeys(prefix);
      // Block the key of the slot taken last, so the other group is granted first and rolled back.
      const last = [...keys].sort((a, b) => slotOf(prefix + a) - slotOf(prefix + b)).pop() as string;
      const blocker = await rival.locks.acquire(last);
      const outcome = await backend.tryAcquireAll(keys.map((key) => request(prefix + key)));
      expect(outcome).toEqual({ acquired: false, held: [{ key: prefix + last, retryAfterMs: expect.any(Number) }] });
      for (const key of keys.filter((key) => key !== last)) {
        const stored = lockKeys(prefix + key);
        expect(await backend.client.exists(stored.lease)).toBe(0);
        expect(await backend.client.exists(stored.holder)).toBe(0);
        // The earlier group was granted (its fence moved) and rolled back; the held key's group never was.
        const rolledBack = slotOf(prefix + key) !== slotOf(prefix + last);
        expect(await backend.client.get(stored.fence)).toEqual(rolledBack ? expect.stringMatching(/^\d+$/) : null);
      }
      expect(await locks.list()).toMatchObject([{ key: last, fencingToken: blocker.fencingToken, local: false }]);

      // Through the service: skipped, nothing held; then once free, the whole set.
      expect(await locks.withSpaceLocks(keys, () => 'ran')).toEqual({ skipped: 'lock-held' });
      expect((await locks.list()).map((record) => record.key)).toEqual([last]);
      const waiting = locks.withSpaceLocks(keys, (held) => held.map((lock) => lock.key), { waitMs: 5_000 });
      await blocker.release();
      expect(await waiting).toEqual([...keys].sort());
      expect(await locks.list()).toEqual([]);
    });
  });

  it('also works on a Cluster client the app built (and does not close it)', async () => {
    const client = new Cluster(cluster.nodes);
    const prefix = uniquePrefix('cluster-client');
    const { app, locks } = await lockApp({ backend: 'redis', redis: { client }, keyPrefix: prefix });
    const lock = await locks.acquire('job');
    expect(await locks.tryAcquire('job')).toBeNull();
    await app.close();
    // Shutdown released the lease; the client is still usable.
    expect(await client.exists(`{${prefix}job}`)).toBe(0);
    expect(lock.signal.aborted).toBe(true);
    await client.quit();
  });
});
