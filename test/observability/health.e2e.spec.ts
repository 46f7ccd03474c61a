import { Controller, Get, Module, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import request from 'supertest';
import { LockHealthIndicator, LockModule, SpaceLockService } from '../../lib';
import { RedisServer, until } from '../support/redis-server';

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly locks: LockHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.locks.isHealthy('locks', { timeoutMs: 300, lossWindowMs: 1_000 })]);
  }
}

/**
 * Terminus's endpoint on a private redis-server: 503 while the server is stopped (SIGSTOP, by
 * its pid) and 200 once it runs again, without restarting the app; 503 for a lease lost within
 * the loss window.
 */
describe('LockHealthIndicator with @nestjs/terminus (private redis-server)', () => {
  let server: RedisServer;
  let app: INestApplication;
  let locks: SpaceLockService;

  beforeAll(async () => {
    server = await RedisServer.start();
    @Module({
      imports: [TerminusModule, LockModule.forRoot({ backend: 'redis', ttlMs: 5_000, heartbeatMs: 200, backendTimeoutMs: 300, redis: { url: server.url } })],
      controllers: [HealthController],
    })
    class HealthApp {}
    const moduleRef = await Test.createTestingModule({ imports: [HealthApp] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    locks = app.get(SpaceLockService);
  });
  afterAll(async () => {
    server?.resume();
    await app?.close();
    await server?.destroy();
  });

  const health = (): request.Test => request(app.getHttpServer()).get('/health');

  it('200 while the store answers, 503 while it is stopped (store and heartbeat), 200 once it is back', async () => {
    const lease = await locks.acquire('health:held');
    const up = await health();
    expect(up.status).toBe(200);
    expect(up.body.info.locks).toMatchObject({ status: 'up', backend: 'redis', store: { ok: true }, heartbeat: { ok: true, leases: 1, late: 0 } });

    server.pause();
    try {
      const storeDown = await health();
      expect(storeDown.status).toBe(503);
      expect(storeDown.body.error.locks).toMatchObject({ status: 'down', store: { ok: false } });
      // Past one heartbeat plus the call timeout, the held lease's heartbeat is late too.
      await until(async () => (await health()).body.error?.locks?.heartbeat?.late === 1, 5_000, 'a late heartbeat');
    } finally {
      server.resume();
    }

    await until(async () => (await health()).status === 200, 5_000, 'healthy again');
    const back = await health();
    expect(back.body.info.locks).toMatchObject({ status: 'up', store: { ok: true }, heartbeat: { ok: true, late: 0 } });
    expect(locks.isHeldNow(lease)).toBe(true);
    await lease.release();
  });

  it('503 for a lease lost within the loss window, 200 after it', async () => {
    const lease = await locks.acquire('health:reaped');
    await locks.forceRelease('health:reaped', { reason: 'health test' });
    expect(await lease.extend()).toBe(false);
    const lost = await health();
    expect(lost.status).toBe(503);
    expect(lost.body.error.locks).toMatchObject({ status: 'down', store: { ok: true }, lossWindowMs: 1_000 });
    expect(lost.body.error.locks.lastLossMsAgo).toBeLessThanOrEqual(1_000);
    await until(async () => (await health()).status === 200, 5_000, 'the loss window passed');
  });
});
