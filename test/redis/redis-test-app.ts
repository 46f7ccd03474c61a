import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Redis } from 'ioredis';
import { LockModule, SpaceLockService, type LockModuleOptions } from '../../lib';
import { RedisLockBackend, type RedisLockBackendOptions } from '../../lib/backends/redis/redis-lock.backend';
import { RedisServer } from '../support/redis-server';

export interface LockApp {
  app: INestApplicationContext;
  locks: SpaceLockService;
}

/** An application context with only the lock module: one "replica" inside the test process. */
export async function lockApp(options: LockModuleOptions): Promise<LockApp> {
  const app = await NestFactory.createApplicationContext(LockModule.forRoot(options), { logger: false, abortOnError: false });
  await app.init();
  return { app, locks: app.get(SpaceLockService) };
}

let prefixes = 0;
/** A key prefix no other test uses, so suites sharing a server never see each other's keys. */
export function uniquePrefix(name: string): string {
  prefixes += 1;
  return `t${process.pid}-${prefixes}-${name}:`;
}

export interface BackendFixture {
  server: RedisServer;
  /** A plain connection for looking at keys. */
  raw: Redis;
  /** The backend's own connection. */
  client: Redis;
  backend: RedisLockBackend;
}

/** A private redis-server and a backend on it for the enclosing describe block (filled in its beforeAll). */
export function redisBackendFixture(options: RedisLockBackendOptions = {}): BackendFixture {
  const fixture = {} as BackendFixture;
  beforeAll(async () => {
    fixture.server = await RedisServer.start();
    fixture.raw = new Redis(fixture.server.url);
    fixture.client = new Redis(fixture.server.url);
    fixture.backend = new RedisLockBackend(fixture.client, options);
    await fixture.backend.init();
  });
  afterAll(async () => {
    await fixture.backend.close();
    fixture.client.disconnect();
    fixture.raw.disconnect();
    await fixture.server.destroy();
  });
  return fixture;
}
