import { Redis } from 'ioredis';
import type { ExtendRequest, LockOwner, LockRequest } from '../../lib';
import { lockApp, redisBackendFixture, uniquePrefix, type LockApp } from './redis-test-app';

const owner: LockOwner = { ownerId: 'round-trips', instanceId: 'instance-1', hostname: 'host-a', pid: 4242 };

/**
 * What each operation costs Redis, as the README promises it ("one round trip to acquire,
 * one to release", heartbeats in one call per chunk, "a 3-key set is one EVALSHA instead of
 * three"), counted by the server itself (INFO commandstats) on a private redis-server. The
 * one place that pins command counts: the behaviour tests do not, so how the backend is
 * split inside can change without touching them.
 */
describe('Redis commands per operation (private redis-server, counted by the server)', () => {
  const fixture = redisBackendFixture({ extendChunkSize: 1_000 });
  const apps: LockApp[] = [];
  let tokens = 0;
  afterAll(() => Promise.all(apps.splice(0).map(({ app }) => app.close())));

  function request(key: string, ttlMs = 5_000): LockRequest {
    tokens += 1;
    return { key, token: `rt-${tokens}`, ttlMs, mode: 'exclusive', owner };
  }

  /** Scripts the server ran while `work` ran (commandstats also counts the commands inside scripts, so only these are compared). */
  async function commandsDuring(work: () => Promise<unknown>): Promise<Record<string, number>> {
    const before = await scriptCalls(fixture.raw);
    await work();
    return { evalsha: (await scriptCalls(fixture.raw)) - before };
  }

  it('acquire, a refused acquire and release: one script each', async () => {
    const key = `${uniquePrefix('rt-single')}job`;
    const first = request(key);
    expect(await commandsDuring(() => fixture.backend.tryAcquire(first))).toEqual({ evalsha: 1 });
    expect(await commandsDuring(() => fixture.backend.tryAcquire(request(key)))).toEqual({ evalsha: 1 });
    expect(await commandsDuring(() => fixture.backend.release(first))).toEqual({ evalsha: 1 });
  });

  it('a heartbeat of 2 500 leases: one script per chunk of extendChunkSize (1 000)', async () => {
    const prefix = uniquePrefix('rt-extend');
    const leases: ExtendRequest[] = [];
    for (let index = 0; index < 2_500; index += 1) {
      const held = request(`${prefix}${index}`, 60_000);
      await fixture.backend.tryAcquire(held);
      leases.push({ key: held.key, token: held.token, mode: 'exclusive', ttlMs: 60_000 });
    }
    expect(await commandsDuring(() => fixture.backend.extend(leases))).toEqual({ evalsha: 3 });
  }, 30_000);

  it('a 3-key set: one script to take it, one when a key is held', async () => {
    const prefix = uniquePrefix('rt-set');
    const keys = ['a', 'b', 'c'].map((name) => `${prefix}${name}`);
    expect(await commandsDuring(() => fixture.backend.tryAcquireAll(keys.map((key) => request(key))))).toEqual({ evalsha: 1 });
    expect(await commandsDuring(() => fixture.backend.tryAcquireAll(keys.map((key) => request(key))))).toEqual({ evalsha: 1 });
  });

  it('through the service: withSpaceLocks of 3 keys is one script to take them and one release each; a miss costs one', async () => {
    const prefix = uniquePrefix('rt-service');
    // A long lease: no heartbeat falls inside the counts.
    const one = await lockApp({ backend: 'redis', redis: { url: fixture.server.url }, keyPrefix: prefix, ttlMs: 60_000 });
    const rival = await lockApp({ backend: 'redis', redis: { url: fixture.server.url }, keyPrefix: prefix, ttlMs: 60_000 });
    apps.push(one, rival);
    let duringWork: Record<string, number> = {};
    const before = await scriptCalls(fixture.raw);
    const whole = await commandsDuring(() =>
      one.locks.withSpaceLocks(['c', 'a', 'b'], async () => {
        duringWork = { evalsha: (await scriptCalls(fixture.raw)) - before };
      }),
    );
    expect(duringWork).toEqual({ evalsha: 1 });
    expect(whole).toEqual({ evalsha: 4 });

    const blocker = await rival.locks.acquire('b');
    expect(await commandsDuring(() => one.locks.withSpaceLocks(['a', 'b', 'c'], () => 'ran'))).toEqual({ evalsha: 1 });
    // tryAcquireMany also names the holder: one set attempt and one look at the holder.
    expect(await commandsDuring(() => one.locks.tryAcquireMany(['c', 'b', 'a']))).toEqual({ evalsha: 2 });
    await blocker.release();
  });
});

/** Script calls the server executed (EVALSHA and the EVAL fallback), from INFO commandstats. */
async function scriptCalls(raw: Redis): Promise<number> {
  const stats = await raw.info('commandstats');
  return [...stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
}
