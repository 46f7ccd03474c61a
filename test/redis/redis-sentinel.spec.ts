import { performance } from 'node:perf_hooks';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

describe('Redis backend through Sentinel (ioredis connection options)', () => {
  let master: RedisServer;
  let sentinel: RedisServer;
  const apps: LockApp[] = [];

  beforeAll(async () => {
    master = await RedisServer.start();
    sentinel = await RedisServer.startSentinel(master, 'locks-master');
  });

  afterAll(async () => {
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
    await sentinel.destroy();
    await master.destroy();
  });

  it('finds the master through Sentinel for locking and for the release channel', async () => {
    const prefix = uniquePrefix('sentinel');
    const options = {
      backend: 'redis' as const,
      redis: { connection: { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: 'locks-master' } },
      keyPrefix: prefix,
    };
    const [one, two] = [await lockApp(options), await lockApp(options)];
    apps.push(one, two);
    const first = await one.locks.acquire('job');
    expect(await master.cli('get', `{${prefix}job}`)).toBe(first.token);
    const waiting = two.locks.acquire('job', { waitMs: 5_000 });
    await until(async () => (await master.cli('pubsub', 'numsub', `{${prefix}job}:released`)).endsWith('1'), 5_000, 'subscribed');
    const releasedAt = performance.now();
    await first.release();
    const next = await waiting;
    expect(performance.now() - releasedAt).toBeLessThan(200);
    expect(next.fencingToken).toBeGreaterThan(first.fencingToken);
    await next.release();
  });
});
