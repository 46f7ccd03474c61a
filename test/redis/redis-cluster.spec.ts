import { Cluster } from 'ioredis';
import { performance } from 'node:perf_hooks';
import { LockBackend, type HeldLock } from '../../lib';
import type { RedisLockBackend } from '../../lib/backends/redis/redis-lock.backend';
import { RedisCluster, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

describe('Redis backend on a real 3-master Redis Cluster', () => {
  let cluster: RedisCluster;
  const apps: LockApp[] = [];

  beforeAll(async () => {
    cluster = await RedisCluster.start(3);
  }, 30_000);

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

  it('hands a lease to a local waiter and wakes a waiter of another replica over cluster pub/sub', async () => {
    const prefix = uniquePrefix('cluster-wait');
    const one = await replica(prefix);
    const two = await replica(prefix);
    const first = await one.locks.acquire('job');
    // Local waiter: served by the handOver script.
    const local = one.locks.acquire('job', { waitMs: 5_000 });
    await first.release();
    const handed = await local;
    expect(handed.fencingToken).toBe(first.fencingToken + 1);

    // Remote waiter: woken by the release published from inside the script.
    const remote = two.locks.acquire('job', { waitMs: 5_000 });
    const channel = `{${prefix}job}:released`;
    const subscribers = async (): Promise<number> =>
      (await Promise.all(cluster.servers.map((server) => server.cli('pubsub', 'numsub', channel))))
        .map((reply) => Number(reply.split('\n').pop()))
        .reduce((sum, count) => sum + count, 0);
    await until(async () => (await subscribers()) === 1, 5_000, 'remote waiter subscribed');
    const releasedAt = performance.now();
    await handed.release();
    const next = await remote;
    expect(performance.now() - releasedAt).toBeLessThan(200);
    expect(next.fencingToken).toBe(handed.fencingToken + 1);
    await next.release();
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
