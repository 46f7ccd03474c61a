import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { RedisModule, RedisService } from '@nestjs-labs/nestjs-ioredis';
import { Redis } from 'ioredis';
import { LockModule, LockOptionsError, SpaceLockService, type HeldLock } from '../../lib';
import { RedisServer, until } from '../support/redis-server';
import { parseHolderRecord } from '../../lib/backends/redis/redis-holder-record';
import { uniquePrefix } from './redis-test-app';

describe('Redis backend with @nestjs-labs/nestjs-ioredis', () => {
  let server: RedisServer;
  let raw: Redis;

  beforeAll(async () => {
    server = await RedisServer.start();
    raw = new Redis(server.url);
  });

  afterAll(async () => {
    raw.disconnect();
    await server.destroy();
  });

  it('takes the connection from RedisModule by namespace; shutdown releases leases before RedisModule quits its clients', async () => {
    const prefix = uniquePrefix('nestjs-ioredis');

    @Injectable()
    class Worker {
      constructor(readonly locks: SpaceLockService) {}
    }
    @Module({
      imports: [
        RedisModule.forRoot({ readyLog: false, config: [{ namespace: 'locks', url: server.url }] }),
        LockModule.forRoot({ backend: 'redis', redis: { namespace: 'locks' }, keyPrefix: prefix }),
      ],
      providers: [Worker],
    })
    class AppModule {}

    const app = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false });
    await app.init();
    const client = app.get(RedisService).getOrThrow('locks');
    const lock: HeldLock = await app.get(Worker).locks.acquire('report');
    const leaseKey = `{${prefix}report}`;
    expect(await raw.get(leaseKey)).toBe(lock.token);
    expect(parseHolderRecord(await raw.get(`${leaseKey}:holder`))?.fencingToken).toBe(lock.fencingToken);

    await app.close();
    // Released through RedisModule's client before that module quit it: nothing is left in Redis.
    expect(await raw.exists(leaseKey, `${leaseKey}:holder`)).toBe(0);
    expect(lock.signal.aborted).toBe(true);
    // RedisModule closed its own client after us (its onApplicationShutdown runs after our beforeApplicationShutdown).
    await until(() => client.status === 'end', 2_000, 'RedisModule client closed');
  });

  it('fails bootstrap with a clear error when the namespace does not exist', async () => {
    @Module({
      imports: [
        // lazyConnect: the app never boots, so nobody would close a connected client.
        RedisModule.forRoot({ readyLog: false, config: { url: server.url, lazyConnect: true } }),
        LockModule.forRoot({ backend: 'redis', redis: { namespace: 'missing' } }),
      ],
    })
    class AppModule {}
    const failure = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false }).catch(
      (error: unknown) => error,
    );
    expect(String(failure)).toMatch(/missing/);
  });

  it('fails with LockOptionsError when RedisModule is not registered', async () => {
    @Module({ imports: [LockModule.forRoot({ backend: 'redis', redis: { namespace: 'locks' } })] })
    class AppModule {}
    const failure = await NestFactory.createApplicationContext(AppModule, { logger: false, abortOnError: false }).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(LockOptionsError);
    expect(String(failure)).toMatch(/RedisModule\.forRoot/);
  });
});
