import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  LockHeldError,
  LockLimitMismatchError,
  LockModule,
  LockNotSupportedError,
  LockOptionsError,
  MemoryLockBackend,
  MemoryLockStore,
  SpaceLockService,
  WithLock,
  isSkipped,
  type HeldLock,
} from '../../lib';
import { Gate, HolderCount, yieldTurns } from '../support/holder-count';
import { uniquePrefix } from '../redis/redis-test-app';
import { until } from '../support/redis-server';

/**
 * Semaphores (`limit`) on the memory backend: module instances sharing one `MemoryLockStore`
 * play replicas; every permit holder reports to a `HolderCount`.
 */
const apps: INestApplicationContext[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function replica(store: MemoryLockStore, keyPrefix: string): Promise<SpaceLockService> {
  const app = await NestFactory.createApplicationContext(LockModule.forRoot({ keyPrefix, memory: { store } }), { logger: false });
  await app.init();
  apps.push(app);
  return app.get(SpaceLockService);
}

async function replicas(name: string, count: number): Promise<{ locks: SpaceLockService[]; store: MemoryLockStore; prefix: string }> {
  const store = new MemoryLockStore();
  const prefix = uniquePrefix(name);
  const locks: SpaceLockService[] = [];
  for (let index = 0; index < count; index += 1) locks.push(await replica(store, prefix));
  return { locks, store, prefix };
}


describe('semaphores (limit) on the memory backend', () => {
  it('holders of two replicas never exceed the limit, and fill it', async () => {
    const {
      locks: [a, b],
    } = await replicas('sem-count', 2);
    const count = new HolderCount(3);
    const rounds = 30;
    const worker = async (locks: SpaceLockService): Promise<void> => {
      for (let round = 0; round < rounds; round += 1) {
        const result = await locks.withSpaceLock(
          'exports',
          async (lock) => {
            expect(lock.limit).toBe(3);
            count.enter('exclusive');
            await yieldTurns(2);
            count.exit('exclusive');
          },
          { limit: 3, waitMs: 20_000 },
        );
        expect(isSkipped(result)).toBe(false);
      }
    };
    await Promise.all([a, b, a, b, a, b, a, b].map(worker));
    expect(count.violations).toEqual([]);
    expect(count.entered.exclusive).toBe(8 * rounds);
    expect(count.maxInside).toBe(3);
  });

  it('a full semaphore is a miss like any other: skipped, LockHeldError, null; retryAfterMs is the earliest holder\'s lease', async () => {
    const {
      locks: [a, b],
    } = await replicas('sem-full', 2);
    const short = await a.acquire('partner-api', { limit: 2, ttlMs: 4_000 });
    const long = await b.acquire('partner-api', { limit: 2, ttlMs: 60_000 });
    expect([short.limit, long.limit]).toEqual([2, 2]);
    expect(long.fencingToken).toBeGreaterThan(short.fencingToken);
    expect(await b.withSpaceLock('partner-api', () => 'ran', { limit: 2 })).toEqual({ skipped: 'lock-held' });
    expect(await a.tryAcquire('partner-api', { limit: 2 })).toBeNull();
    const error = await b.acquire('partner-api', { limit: 2 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LockHeldError);
    // The earliest-ending permit (4 s), not the longest (60 s).
    expect((error as LockHeldError).retryAfterMs).toBeGreaterThan(3_000);
    expect((error as LockHeldError).retryAfterMs).toBeLessThanOrEqual(4_000);
    const holders = await a.inspectAll('partner-api');
    expect(holders.map((holder) => [holder.limit, holder.holderCount])).toEqual([
      [2, 2],
      [2, 2],
    ]);
    expect(a.held()).toEqual([expect.objectContaining({ key: 'partner-api', limit: 2 })]);
    await short.release();
    const third = await b.tryAcquire('partner-api', { limit: 2 });
    expect(third?.fencingToken).toBeGreaterThan(long.fencingToken);
    await Promise.all([long.release(), third?.release()]);
  });

  it('permits go to queued waiters of several replicas in the order they came', async () => {
    const { locks, store, prefix } = await replicas('sem-fifo', 3);
    const [holder, a, b] = locks;
    const permits = [await holder.acquire('slots', { limit: 2 }), await holder.acquire('slots', { limit: 2 })];
    const order: string[] = [];
    const waiters: Promise<HeldLock>[] = [];
    for (const [index, locks] of [a, b, a, b].entries()) {
      const waiter = locks.acquire('slots', { limit: 2, waitMs: 10_000 });
      waiter.then(() => order.push(`w${index}`), () => undefined);
      waiters.push(waiter);
      await until(() => store.queued(`${prefix}slots`) === index + 1);
    }
    // Each release passes one permit to the head of the line.
    await permits[0].release();
    await until(() => order.length === 1);
    await permits[1].release();
    await until(() => order.length === 2);
    expect(store.queued(`${prefix}slots`)).toBe(2);
    const granted = await Promise.all(waiters.slice(0, 2));
    await granted[0].release();
    await until(() => order.length === 3);
    await granted[1].release();
    await until(() => order.length === 4);
    expect(order).toEqual(['w0', 'w1', 'w2', 'w3']);
    for (const lock of await Promise.all(waiters.slice(2))) await lock.release();
  });

  it('two callers of a key with different limits get LockLimitMismatchError at once, never a wait', async () => {
    const {
      locks: [a, b],
    } = await replicas('sem-mismatch', 2);
    const permit = await a.acquire('tenant:1', { limit: 3 });
    // Across replicas (the store says so) and in the same replica (its key table does); a long
    // waitMs would make this test time out if the mismatch were waited on.
    for (const locks of [a, b]) {
      await expect(locks.acquire('tenant:1', { limit: 5, waitMs: 60_000 })).rejects.toMatchObject({
        constructor: LockLimitMismatchError,
        key: 'tenant:1',
        requestedLimit: 5,
        limitInUse: 3,
      });
      await expect(locks.withSpaceLock('tenant:1', () => 1, { waitMs: 60_000 })).rejects.toMatchObject({ requestedLimit: 1, limitInUse: 3 });
      await expect(locks.tryAcquire('tenant:1', { mode: 'shared' })).rejects.toBeInstanceOf(LockLimitMismatchError);
      await expect(locks.acquireMany(['other', { key: 'tenant:1', limit: 4 }], { waitMs: 60_000 })).rejects.toBeInstanceOf(LockLimitMismatchError);
    }
    await permit.release();
    // A plain holder: a semaphore caller is told the key is a plain lock (limit 1).
    const plain = await b.acquire('tenant:1');
    await expect(a.acquire('tenant:1', { limit: 3, waitMs: 60_000 })).rejects.toMatchObject({ limitInUse: 1, requestedLimit: 3 });
    await plain.release();
    expect(await a.inspectAll('tenant:1')).toEqual([]);
    expect(a.held()).toEqual([]);
    expect(b.held()).toEqual([]);
  });

  it('limit 1 is a plain lock', async () => {
    const {
      locks: [a, b],
    } = await replicas('sem-one', 2);
    const lock = await a.acquire('single', { limit: 1 });
    expect(lock.limit).toBeUndefined();
    // The same key without limit is the same lock, not a mismatch.
    expect(await b.tryAcquire('single')).toBeNull();
    await lock.release();
  });

  it('bad limits are typed errors, at the call and at decoration', () => {
    for (const options of [{ limit: 0 }, { limit: 10_001 }, { limit: 1.5 }, { limit: 2, mode: 'shared' as const }]) {
      expect(() => WithLock('k', options)).toThrow(LockOptionsError);
    }
  });

  it('an expired permit frees its place for the next waiter', async () => {
    const { locks, store, prefix } = await replicas('sem-expire', 2);
    const [a, b] = locks;
    // A holder whose heartbeat stopped (a stalled replica) is played by a permit the store
    // granted directly, with no service to extend it.
    const stalled = await new MemoryLockBackend({ store }).tryAcquire({
      key: `${prefix}jobs`,
      token: 'stalled-holder',
      ttlMs: 300,
      mode: 'exclusive',
      limit: 2,
      owner: { ownerId: 'stalled', instanceId: 'stalled', hostname: 'h', pid: 1 },
    });
    expect(stalled.acquired).toBe(true);
    const permit = await a.acquire('jobs', { limit: 2 });
    const waiter = b.acquire('jobs', { limit: 2, waitMs: 5_000 });
    await until(() => store.queued(`${prefix}jobs`) === 1);
    const next = await waiter;
    expect(next.fencingToken).toBeGreaterThan(permit.fencingToken);
    expect((await a.inspectAll('jobs')).map((holder) => holder.ownerId)).not.toContain('stalled');
    await Promise.all([permit.release(), next.release()]);
  });
});

describe('semaphores on the file backend', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lock-sem-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('are refused with LockNotSupportedError at the call and at bootstrap; limit 1 and shared still work', async () => {
    const app = await NestFactory.createApplicationContext(LockModule.forRoot({ backend: 'file', file: { dir } }), { logger: false });
    await app.init();
    apps.push(app);
    const locks = app.get(SpaceLockService);
    await expect(locks.acquire('report', { limit: 2 })).rejects.toThrow(LockNotSupportedError);
    await expect(locks.withSpaceLocks([{ key: 'report', limit: 3 }], () => 1)).rejects.toThrow(/file backend does not support semaphores/);
    expect(await locks.withSpaceLock('report', (lock) => lock.mode, { limit: 1 })).toBe('exclusive');
    const gate = new Gate();
    const readers = [1, 2].map(() => locks.withSpaceLock('report', () => gate.open.then(() => 'read'), { mode: 'shared' }));
    gate.release();
    expect(await Promise.all(readers)).toEqual(['read', 'read']);

    @Injectable()
    class ExportJob {
      @WithLock('export', { limit: 2 })
      async run(): Promise<void> {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ backend: 'file', file: { dir } })],
      providers: [ExportJob],
    }).compile();
    await expect(moduleRef.init()).rejects.toThrow(LockNotSupportedError);
  });
});
