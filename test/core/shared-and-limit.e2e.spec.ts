import { Controller, Get, Injectable, Module, Param, Post, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { CurrentLock, LockModule, MemoryLockBackend, MemoryLockStore, SpaceLockService, WithLock, type HeldLock } from '../../lib';
import { Gate, HolderCount } from '../support/holder-count';
import { uniquePrefix } from '../redis/redis-test-app';

/**
 * `@WithLock` with `mode: 'shared'` and with `limit` over HTTP (and on a provider), on the memory
 * backend; another module instance on the same `MemoryLockStore` plays another replica.
 */
const count = new HolderCount();
let gate = new Gate();

@Controller('docs')
class DocsController {
  @Get(':id')
  @WithLock('doc:{params.id}', { mode: 'shared' })
  async read(@Param('id') id: string, @CurrentLock() lock: HeldLock): Promise<object> {
    count.enter('shared');
    await gate.open;
    count.exit('shared');
    return { id, mode: lock.mode };
  }

  @Post(':id')
  @WithLock('doc:{params.id}')
  write(@Param('id') id: string): object {
    return { id, written: true };
  }
}

@Controller('exports')
class ExportsController {
  @Post(':tenant')
  @WithLock('export:{params.tenant}', { limit: 2 })
  start(@Param('tenant') tenant: string, @CurrentLock() lock: HeldLock): object {
    return { tenant, limit: lock.limit };
  }
}

@Injectable()
class CatalogReader {
  @WithLock('catalog', { mode: 'shared' })
  async read(inside: Gate): Promise<string> {
    count.enter('shared');
    await inside.open;
    count.exit('shared');
    return 'read';
  }

  @WithLock('catalog')
  async rebuild(): Promise<string> {
    return 'rebuilt';
  }
}

async function httpApp(module: object, platform: 'express' | 'fastify'): Promise<INestApplication> {
  const app =
    platform === 'fastify'
      ? await NestFactory.create<NestFastifyApplication>(module as never, new FastifyAdapter(), { logger: false })
      : await NestFactory.create(module as never, { logger: false });
  await app.init();
  if (platform === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  return app;
}

describe.each(['express', 'fastify'] as const)('@WithLock with mode shared and limit over HTTP (%s)', (platform) => {
  const store = new MemoryLockStore();
  const keyPrefix = uniquePrefix(`rw-http-${platform}`);
  let app: INestApplication;
  let other: INestApplication;
  let otherLocks: SpaceLockService;

  beforeAll(async () => {
    @Module({ imports: [LockModule.forRoot({ keyPrefix, memory: { store } })], controllers: [DocsController, ExportsController], providers: [CatalogReader] })
    class AppModule {}
    app = await httpApp(AppModule, platform);
    other = await NestFactory.create(LockModule.forRoot({ keyPrefix, memory: { store } }), { logger: false });
    await other.init();
    otherLocks = other.get(SpaceLockService);
  });
  afterAll(async () => {
    await app.close();
    await other.close();
  });
  beforeEach(() => {
    gate = new Gate();
  });

  it('readers are inside together on a shared route; the exclusive route answers 503 meanwhile', async () => {
    const server = app.getHttpServer();
    const readers = [request(server).get('/docs/7'), request(server).get('/docs/7')].map((call) => call.then((response) => response));
    await count.when((c) => c.readers === 2);
    // A reader of another replica joins them.
    const remoteReader = await otherLocks.tryAcquire('doc:7', { mode: 'shared' });
    expect(remoteReader).not.toBeNull();
    const refused = await request(server).post('/docs/7');
    expect(refused.status).toBe(503);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    gate.release();
    for (const response of await Promise.all(readers)) expect(response.body).toEqual({ id: '7', mode: 'shared' });
    await remoteReader?.release();
    expect((await request(server).post('/docs/7')).status).toBe(201);
    expect(count.violations).toEqual([]);
  });

  it("a full semaphore answers 503 with Retry-After = the earliest holder's remaining lease", async () => {
    const server = app.getHttpServer();
    // Another replica's two permits: one ends in about 4.5 s, the other in a minute.
    const backend = new MemoryLockBackend({ store });
    const owner = { ownerId: 'other', instanceId: 'other', hostname: 'h', pid: 1 };
    for (const [token, ttlMs] of [
      ['short', 4_500],
      ['long', 60_000],
    ] as const) {
      await backend.tryAcquire({ key: `${keyPrefix}export:acme`, token, ttlMs, mode: 'exclusive', limit: 2, owner });
    }
    const earliestSeconds = async (): Promise<number> =>
      Math.ceil(Math.min(...(await otherLocks.inspectAll('export:acme')).map((holder) => holder.expiresInMs ?? Infinity)) / 1_000);
    const before = await earliestSeconds();
    const refused = await request(server).post('/exports/acme');
    const after = await earliestSeconds();
    expect(refused.status).toBe(503);
    const retryAfter = Number(refused.headers['retry-after']);
    expect(retryAfter).toBeLessThanOrEqual(before);
    expect(retryAfter).toBeGreaterThanOrEqual(after);
    expect(retryAfter).toBeLessThanOrEqual(5);
    expect(refused.body).toMatchObject({ key: 'export:acme', retryAfterSeconds: retryAfter });
    // One permit back: the route runs, holding a permit of the same semaphore.
    await backend.release({ key: `${keyPrefix}export:acme`, token: 'short', mode: 'exclusive', limit: 2 });
    const ran = await request(server).post('/exports/acme');
    expect(ran.status).toBe(201);
    expect(ran.body).toEqual({ tenant: 'acme', limit: 2 });
    await backend.release({ key: `${keyPrefix}export:acme`, token: 'long', mode: 'exclusive', limit: 2 });
  });

  it('a key held with another limit answers 409 Conflict, at once', async () => {
    const held = await otherLocks.acquire('export:globex', { limit: 5 });
    const response = await request(app.getHttpServer()).post('/exports/globex');
    expect(response.status).toBe(409);
    expect(response.body).toMatchObject({ statusCode: 409, key: 'export:globex' });
    expect(response.headers['retry-after']).toBeUndefined();
    await held.release();
  });

  it('@WithLock({ mode: shared }) on a provider: readers run together, a writer is skipped meanwhile', async () => {
    const reader = app.get(CatalogReader);
    const inside = new Gate();
    const reads = [reader.read(inside), reader.read(inside)];
    await count.when((c) => c.readers === 2);
    await expect(reader.rebuild()).resolves.toBeUndefined();
    inside.release();
    expect(await Promise.all(reads)).toEqual(['read', 'read']);
    await expect(reader.rebuild()).resolves.toBe('rebuilt');
    expect(count.violations).toEqual([]);
  });
});
