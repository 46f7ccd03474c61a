import 'reflect-metadata';
import { CanActivate, ExecutionContext, Injectable, INestApplication, Logger } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { LockAdminModule, LockModule, LockOptionsError, SpaceLockService } from '../../lib';
import { RedisServer, until } from '../support/redis-server';
import { uniquePrefix } from './ops-support';

/** Lets requests with `x-admin: yes` through, like a real role check would. */
@Injectable()
class AdminHeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const headers = context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers;
    return headers['x-admin'] === 'yes';
  }
}

describe('LockAdminModule refuses to register without a guard', () => {
  it.each([
    ['no options', undefined],
    ['no guards', {}],
    ['an empty list', { guards: [] }],
    ['something that is not a guard', { guards: [{ allow: true }] }],
  ])('%s', (_, options) => {
    expect(() => LockAdminModule.forRoot(options as never)).toThrow(LockOptionsError);
    expect(() => LockAdminModule.forRoot(options as never)).toThrow(/needs guards/);
  });
});

describe.each(['express', 'fastify'] as const)('LockAdminModule over HTTP (%s)', (platform) => {
  let app: INestApplication;
  let locks: SpaceLockService;
  const warnings: string[] = [];

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        LockModule.forRoot({ isGlobal: true, ownerId: 'app-under-test' }),
        LockAdminModule.forRoot({
          guards: [AdminHeaderGuard],
          caller: (req) => `admin:${(req as { headers: Record<string, string> }).headers['x-user']}`,
        }),
      ],
    }).compile();
    moduleRef.useLogger({ log: () => undefined, error: () => undefined, warn: (message: unknown) => void warnings.push(String(message)) });
    app = platform === 'fastify' ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter()) : moduleRef.createNestApplication();
    await app.init();
    if (platform === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
    locks = app.get(SpaceLockService);
  });
  afterAll(async () => {
    await app.close();
    Logger.overrideLogger(['error']);
  });

  const http = () => request(app.getHttpServer());

  it('answers 403 without the guard\'s consent', async () => {
    await http().get('/admin/locks').expect(403);
    await http().post('/admin/locks/reap').send({ key: 'x', reason: 'y' }).expect(403);
  });

  it('lists and inspects holders (without their tokens), and reaps compare-aware with the caller logged', async () => {
    const lock = await locks.acquire(`job:${platform}`, { ownerId: 'stuck-job' });
    const admin = { 'x-admin': 'yes', 'x-user': 'alice' };

    const listed = await http().get('/admin/locks').query({ prefix: 'job:' }).set(admin).expect(200);
    expect(listed.body).toEqual([
      expect.objectContaining({ key: `job:${platform}`, ownerId: 'stuck-job', pid: process.pid, fencingToken: lock.fencingToken }),
    ]);
    expect(JSON.stringify(listed.body)).not.toContain(lock.token);
    const holders = await http().get('/admin/locks/holders').query({ key: `job:${platform}` }).set(admin).expect(200);
    expect(holders.body).toEqual([expect.objectContaining({ ownerId: 'stuck-job', local: true })]);

    await http().get('/admin/locks').query({ limit: 'many' }).set(admin).expect(400);
    await http().get('/admin/locks/holders').set(admin).expect(400);
    await http().post('/admin/locks/reap').set(admin).send({ key: `job:${platform}` }).expect(400);

    const changed = await http()
      .post('/admin/locks/reap')
      .set(admin)
      .send({ key: `job:${platform}`, reason: 'stuck', expectFencingToken: lock.fencingToken + 1 })
      .expect(409);
    expect(changed.body).toMatchObject({ outcome: 'changed-hands', current: { fencingToken: lock.fencingToken } });

    const reaped = await http()
      .post('/admin/locks/reap')
      .set(admin)
      .send({ key: `job:${platform}`, reason: 'stuck', expectFencingToken: lock.fencingToken })
      .expect(200);
    expect(reaped.body).toMatchObject({ key: `job:${platform}`, outcome: 'released', previous: { ownerId: 'stuck-job' } });
    expect(warnings.some((line) => line.includes(`forceRelease "job:${platform}" by admin:alice (reason: stuck): released`))).toBe(true);

    await http().post('/admin/locks/reap').set(admin).send({ key: `job:${platform}`, reason: 'again' }).expect(404);
    await lock.release();
  });
});

describe('LockAdminModule while the store is unreachable', () => {
  let server: RedisServer;
  let app: INestApplication;
  beforeAll(async () => {
    server = await RedisServer.start();
    const moduleRef = await Test.createTestingModule({
      imports: [
        LockModule.forRoot({ isGlobal: true, backend: 'redis', redis: { url: server.url }, keyPrefix: uniquePrefix('admin-down'), backendTimeoutMs: 500 }),
        LockAdminModule.forRoot({ guards: [AdminHeaderGuard] }),
      ],
    }).compile();
    moduleRef.useLogger(false);
    app = moduleRef.createNestApplication();
    await app.init();
  });
  afterAll(async () => {
    await server.restart();
    await app.close();
    await server.destroy();
  });

  it('answers 503 on every route, then works again once the store is back', async () => {
    const admin = { 'x-admin': 'yes' };
    const http = () => request(app.getHttpServer());
    await http().get('/admin/locks').set(admin).expect(200);

    await server.stop();
    const listed = await http().get('/admin/locks').set(admin);
    expect(listed.status).toBe(503);
    expect(listed.headers['retry-after']).toBeUndefined();
    expect((await http().get('/admin/locks/holders').query({ key: 'job' }).set(admin)).status).toBe(503);
    expect((await http().post('/admin/locks/reap').set(admin).send({ key: 'job', reason: 'stuck' })).status).toBe(503);
    expect((await http().get('/admin/locks/ui').set(admin)).status).toBe(503);
    expect((await http().get('/admin/locks/ui/rows').set(admin)).status).toBe(503);
    // Still the guard first: no consent, no word about the store.
    expect((await http().get('/admin/locks')).status).toBe(403);

    await server.restart();
    await until(async () => (await http().get('/admin/locks').set(admin)).status === 200, 10_000, 'store back');
    await http().post('/admin/locks/reap').set(admin).send({ key: 'job', reason: 'stuck' }).expect(404);
    await http().get('/admin/locks/ui').set(admin).expect(200);
  });
});
