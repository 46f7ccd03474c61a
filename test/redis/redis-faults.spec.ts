import { Controller, HttpCode, INestApplication, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { performance } from 'node:perf_hooks';
import request from 'supertest';
import { LockBackendError, LockLostError, LockModule, SpaceLockService, WithLock } from '../../lib';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

/** Every fault test gets its own server: pausing or stopping it must not disturb anyone else. */
describe('Redis backend under faults', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  const apps: LockApp[] = [];
  let server: RedisServer | undefined;

  beforeAll(() => process.on('unhandledRejection', onUnhandled));
  afterAll(() => {
    process.off('unhandledRejection', onUnhandled);
  });
  afterEach(async () => {
    // Closing apps releases leases, which needs Redis answering.
    server?.resume();
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
    await server?.destroy();
    server = undefined;
    // Let any stray rejection surface before judging.
    await new Promise((resolve) => setImmediate(resolve));
    expect(unhandled).toEqual([]);
  });

  async function replica(prefix: string, ttlMs: number, backendTimeoutMs = 2_000): Promise<LockApp> {
    const created = await lockApp({ backend: 'redis', redis: { url: server!.url }, keyPrefix: prefix, ttlMs, backendTimeoutMs });
    apps.push(created);
    return created;
  }

  it('Redis paused longer than the TTL: the holder is told before the TTL ends; the next holder has a higher token', async () => {
    server = await RedisServer.start();
    const prefix = uniquePrefix('pause');
    const ttlMs = 600;
    const first = await replica(prefix, ttlMs);
    const second = await replica(prefix, ttlMs);
    const lock = await first.locks.acquire('job');
    const lost = new Promise<{ at: number; reason: unknown }>((resolve) =>
      lock.signal.addEventListener('abort', () => resolve({ at: performance.now(), reason: lock.signal.reason }), { once: true }),
    );

    server.pause();
    const pausedAt = performance.now();
    const { at, reason } = await lost;
    // The last confirmed heartbeat was sent before the pause, so the local deadline is
    // earlier than Redis' own expiry, which is at most ttlMs after the pause.
    expect(at - pausedAt).toBeLessThanOrEqual(ttlMs);
    expect(reason).toBeInstanceOf(LockLostError);
    expect((reason as LockLostError).reason).toBe('lease-timed-out');

    // Stay paused well past the TTL (Redis' clock keeps running), then come back.
    await until(() => performance.now() - pausedAt >= 2 * ttlMs, 5_000);
    server.resume();

    const next = await second.locks.acquire('job', { waitMs: 3_000 });
    expect(next.fencingToken).toBeGreaterThan(lock.fencingToken);
    // The stale holder's release is harmless: it reports, never throws, never frees the new lease.
    await expect(lock.release()).resolves.toBe('not-owner');
    expect((await second.locks.inspect('job'))?.fencingToken).toBe(next.fencingToken);
    await next.release();
  });

  it('Redis stopped: LockBackendError within the bound, HTTP 503 without Retry-After, recovery after restart', async () => {
    server = await RedisServer.start();
    const prefix = uniquePrefix('stopped');
    const backendTimeoutMs = 500;

    @Controller()
    class JobController {
      @Post('job')
      @HttpCode(200)
      @WithLock('job')
      run(): object {
        return { ok: true };
      }
    }
    @Module({
      imports: [LockModule.forRoot({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix, ttlMs: 1_000, backendTimeoutMs })],
      controllers: [JobController],
    })
    class AppModule {}
    const app: INestApplication = await NestFactory.create(AppModule, { logger: false });
    await app.init();
    apps.push({ app, locks: app.get(SpaceLockService) });
    const locks = app.get(SpaceLockService);
    await request(app.getHttpServer()).post('/job').expect(200);

    await server.stop();
    const started = performance.now();
    const failure = await locks.acquire('other').catch((error: unknown) => error);
    const elapsed = performance.now() - started;
    expect(failure).toBeInstanceOf(LockBackendError);
    expect(elapsed).toBeLessThan(backendTimeoutMs + 250);

    const response = await request(app.getHttpServer()).post('/job');
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBeUndefined();
    expect(response.body.message).toMatch(/backend "redis" is unavailable/);

    await server.restart();
    // The app is not restarted: its connection reconnects by itself.
    await until(async () => (await request(app.getHttpServer()).post('/job')).status === 200, 10_000, 'locking works again');
    const lock = await locks.acquire('other');
    expect(lock.fencingToken).toBeGreaterThanOrEqual(1);
    await lock.release();
    process.stdout.write(`[redis] acquire with Redis stopped failed after ${Math.round(elapsed)} ms\n`);
  });

  it('4 waiters in 4 replicas get the lock one after another, each within a few ms of the previous release', async () => {
    server = await RedisServer.start();
    const prefix = uniquePrefix('waiters');
    const holder = await replica(prefix, 5_000);
    const waiters = await Promise.all([0, 1, 2, 3].map(() => replica(prefix, 5_000)));
    const first = await holder.locks.acquire('job');
    const events: { what: 'granted' | 'releasing'; at: number; token: number }[] = [];
    const done = waiters.map(async ({ locks }) => {
      const lock = await locks.acquire('job', { waitMs: 10_000 });
      events.push({ what: 'granted', at: performance.now(), token: lock.fencingToken });
      await new Promise((resolve) => setTimeout(resolve, 20));
      events.push({ what: 'releasing', at: performance.now(), token: lock.fencingToken });
      await lock.release();
    });
    // Each replica waits on its one shared subscriber connection.
    const channel = `{${prefix}job}:released`;
    await until(async () => (await server!.cli('pubsub', 'numsub', channel)).endsWith('4'), 5_000, '4 subscribers');

    events.push({ what: 'releasing', at: performance.now(), token: first.fencingToken });
    await first.release();
    await Promise.all(done);

    const gaps: number[] = [];
    for (let index = 1; index < events.length; index += 2) {
      expect(events[index].what).toBe('granted');
      expect(events[index - 1].what).toBe('releasing');
      expect(events[index].token).toBeGreaterThan(events[index - 1].token);
      gaps.push(events[index].at - events[index - 1].at);
    }
    expect(gaps).toHaveLength(4);
    for (const gap of gaps) expect(gap).toBeLessThan(50);
    // Nobody waits any more: every channel subscription was dropped.
    await until(async () => (await server!.cli('pubsub', 'numsub', channel)).endsWith('0'), 2_000, 'unsubscribed');
    process.stdout.write(`[redis] release -> next grant: ${gaps.map((gap) => gap.toFixed(1)).join(', ')} ms\n`);
  });
});
