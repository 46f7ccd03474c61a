// The README's "Testing your app" example, run by the compatibility suite under Vitest (ESM apps)
// and Jest (CommonJS apps: compat/run.ts drops the vitest import, Jest has these globals).
import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { LockModule, MemoryLockStore, SpaceLockService } from 'nestjs-lock';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { SpacesController, SpacesService } from '../src/spaces.controller.js';

/** One replica of the app, on the memory backend; replicas given the same store share their locks. */
async function replica(store: MemoryLockStore): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [LockModule.forRoot({ backend: 'memory', memory: { store } })],
    controllers: [SpacesController],
    providers: [SpacesService],
  }).compile();
  const app = moduleRef.createNestApplication();
  await app.init();
  return app;
}

describe('SpacesController', () => {
  const apps: INestApplication[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  it('answers 503 with Retry-After while another replica syncs the same space', async () => {
    const store = new MemoryLockStore();
    const [a, b] = [await replica(store), await replica(store)];
    apps.push(a, b);

    await a.get(SpaceLockService).withSpaceLock('space:42', async () => {
      const busy = await request(b.getHttpServer()).post('/spaces/42/sync');
      expect(busy.status).toBe(503);
      expect(busy.headers['retry-after']).toMatch(/^\d+$/);
    });
    await request(b.getHttpServer()).post('/spaces/42/sync').expect(201, { synced: '42' });
  });
});
