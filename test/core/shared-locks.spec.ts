import { NestFactory } from '@nestjs/core';
import type { INestApplicationContext } from '@nestjs/common';
import {
  LockModule,
  MemoryLockBackend,
  MemoryLockStore,
  SpaceLockService,
  isSkipped,
  type HeldLock,
  type LockCallOptions,
} from '../../lib';
import { Gate, HolderCount, yieldTurns } from '../support/holder-count';
import { uniquePrefix } from '../redis/redis-test-app';
import { until } from '../support/redis-server';

/**
 * Readers-writer locks on the memory backend: several module instances sharing one
 * `MemoryLockStore` play several replicas; every holder reports to a `HolderCount` while it is
 * inside, and the tests decide by those counts.
 */
const apps: INestApplicationContext[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

/** A module instance on `store`; `keyByKey`: its backend has no `tryAcquireAll`, so sets are taken key by key. */
async function replica(store: MemoryLockStore, keyPrefix: string, keyByKey = false): Promise<SpaceLockService> {
  const backend = new MemoryLockBackend({ store });
  if (keyByKey) Object.defineProperty(backend, 'tryAcquireAll', { value: undefined });
  const app = await NestFactory.createApplicationContext(LockModule.forRoot({ backend, keyPrefix }), { logger: false });
  await app.init();
  apps.push(app);
  return app.get(SpaceLockService);
}

/** Two replicas on one store, with a key prefix of their own. */
async function twoReplicas(name: string, keyByKey = false): Promise<[SpaceLockService, SpaceLockService, MemoryLockStore, string]> {
  const store = new MemoryLockStore();
  const prefix = uniquePrefix(name);
  return [await replica(store, prefix, keyByKey), await replica(store, prefix, keyByKey), store, prefix];
}

/** Hold `key` in `mode` while `inside` runs, reporting to `count`. */
function holding(
  locks: SpaceLockService,
  key: string,
  count: HolderCount,
  inside: (lock: HeldLock) => Promise<unknown>,
  options: LockCallOptions = {},
): Promise<unknown> {
  const mode = options.mode ?? 'exclusive';
  return locks.withSpaceLock(
    key,
    async (lock) => {
      count.enter(mode);
      try {
        return await inside(lock);
      } finally {
        count.exit(mode);
      }
    },
    options,
  );
}

describe('shared (readers-writer) locks on the memory backend', () => {
  it('readers of two replicas are inside together; a writer meanwhile is refused', async () => {
    const [a, b] = await twoReplicas('rw-overlap');
    const count = new HolderCount();
    const gate = new Gate();
    const readers = [a, b, a].map((locks) => holding(locks, 'doc', count, () => gate.open, { mode: 'shared' }));
    // All three are inside at once: none of them waited for another (waitMs 0 would have skipped).
    await count.when((c) => c.readers === 3);
    expect(await b.tryAcquire('doc')).toBeNull();
    expect(await a.tryAcquire('doc')).toBeNull();
    const holders = await b.inspectAll('doc');
    expect(holders.map((holder) => holder.mode)).toEqual(['shared', 'shared', 'shared']);
    expect(holders.every((holder) => holder.holderCount === 3)).toBe(true);
    // One fencing counter for the key: every reader has its own, strictly rising token.
    const tokens = holders.map((holder) => holder.fencingToken);
    expect(new Set(tokens).size).toBe(3);
    expect(tokens).toEqual([...tokens].sort((x, y) => x - y));
    gate.release();
    expect((await Promise.all(readers)).some(isSkipped)).toBe(false);
    expect(count.violations).toEqual([]);
  });

  it('a writer never overlaps anyone, while readers of two replicas still overlap', async () => {
    const [a, b] = await twoReplicas('rw-mixed');
    const count = new HolderCount();
    const rounds = 40;
    const worker = async (locks: SpaceLockService, index: number): Promise<void> => {
      for (let round = 0; round < rounds; round += 1) {
        const mode = (round + index) % 4 === 0 ? 'exclusive' : 'shared';
        const result = await holding(locks, 'mixed', count, () => yieldTurns(2), { mode, waitMs: 20_000 });
        expect(isSkipped(result)).toBe(false);
      }
    };
    await Promise.all([a, b, a, b, a, b].map((locks, index) => worker(locks, index)));
    expect(count.violations).toEqual([]);
    expect(count.entered.exclusive).toBe(60);
    expect(count.entered.shared).toBe(180);
    expect(count.maxReaders).toBeGreaterThanOrEqual(2);
  });

  it('a steady stream of readers from two replicas does not keep a waiting writer out past its waitMs', async () => {
    const [a, b, store, prefix] = await twoReplicas('rw-starve');
    const count = new HolderCount();
    let stop = false;
    // Three reader loops per replica, each back in at once: without writer preference the key
    // would never be free of readers.
    const readerLoop = async (locks: SpaceLockService): Promise<void> => {
      while (!stop) await holding(locks, 'hot', count, () => yieldTurns(3), { mode: 'shared', waitMs: 20_000 });
    };
    const loops = [a, b, a, b, a, b].map(readerLoop);
    // Readers overlap before the writer comes.
    await count.when((c) => c.readers >= 3);
    const writer = holding(b, 'hot', count, async () => count.readers, { waitMs: 5_000 });
    try {
      // The writer is queued in the store (its replica's own readers first let it have the slot).
      await count.when(() => store.queued(`${prefix}hot`) > 0 || count.writers > 0);
      // Inside with no reader beside it, within its waitMs (a timeout would reject here).
      await expect(writer).resolves.toBe(0);
    } finally {
      stop = true;
      await Promise.allSettled(loops);
    }
    expect(count.violations).toEqual([]);
    expect(count.entered.exclusive).toBe(1);
  });

  it('readers queued behind a writer are let in together when it leaves', async () => {
    const [a, b, store, prefix] = await twoReplicas('rw-head');
    const count = new HolderCount();
    const writerGate = new Gate();
    const readersGate = new Gate();
    const writer = holding(a, 'page', count, () => writerGate.open);
    await count.when((c) => c.writers === 1);
    const readers = [b, b, a].map((locks) => holding(locks, 'page', count, () => readersGate.open, { mode: 'shared', waitMs: 10_000 }));
    // b's two readers queue in the store; a's waits behind a's own writer.
    await count.when(() => store.queued(`${prefix}page`) === 2);
    writerGate.release();
    await writer;
    await count.when((c) => c.readers === 3);
    readersGate.release();
    await Promise.all(readers);
    expect(count.violations).toEqual([]);
  });

  it('a new reader does not get in ahead of a queued writer', async () => {
    const [a, b, store, prefix] = await twoReplicas('rw-order');
    const held = await a.acquire('ledger', { mode: 'shared' });
    const writer = b.acquire('ledger', { waitMs: 10_000 });
    writer.catch(() => undefined);
    await until(() => store.queued(`${prefix}ledger`) === 1);
    // Readers (of the holder's own replica, which the store alone decides for) could share with
    // the holder, but a writer is waiting: they queue behind it.
    expect(await a.tryAcquire('ledger', { mode: 'shared' })).toBeNull();
    const lateReader = a.acquire('ledger', { mode: 'shared', waitMs: 10_000 });
    lateReader.catch(() => undefined);
    await until(() => store.queued(`${prefix}ledger`) === 2);
    await held.release();
    const writerLock = await writer;
    expect(writerLock.mode).toBe('exclusive');
    expect(await a.inspectAll('ledger')).toHaveLength(1);
    await writerLock.release();
    const late = await lateReader;
    expect(late.fencingToken).toBeGreaterThan(writerLock.fencingToken);
    await late.release();
  });

  it('inspect, list and forceRelease see every holder: one by fencing token, or all', async () => {
    const [a, b] = await twoReplicas('rw-ops');
    const leases = [await a.acquire('shelf', { mode: 'shared' }), await b.acquire('shelf', { mode: 'shared' }), await a.acquire('shelf', { mode: 'shared' })];
    expect((await b.list()).filter((info) => info.key === 'shelf')).toHaveLength(3);
    expect((await a.inspectAll('shelf')).map((info) => info.local)).toEqual([true, false, true]);
    expect(await b.inspect('shelf')).toMatchObject({ fencingToken: leases[0].fencingToken, holderCount: 3 });

    const middle = leases[1].fencingToken;
    const one = await a.forceRelease('shelf', { reason: 'test: evict one reader', expectFencingToken: middle });
    expect(one).toMatchObject({ outcome: 'released', previous: { fencingToken: middle } });
    expect((await a.inspectAll('shelf')).map((info) => info.fencingToken)).toEqual([leases[0].fencingToken, leases[2].fencingToken]);
    // The evicted reader learns at its next extend; the others still hold.
    expect(await leases[1].extend()).toBe(false);
    expect(leases[1].signal.aborted).toBe(true);
    expect(await leases[0].extend()).toBe(true);

    expect(await a.forceRelease('shelf', { reason: 'test: gone', expectFencingToken: middle })).toMatchObject({
      outcome: 'changed-hands',
      current: { fencingToken: leases[0].fencingToken },
    });
    const all = await b.forceRelease('shelf', { reason: 'test: evict all' });
    expect(all).toMatchObject({ outcome: 'released', previous: { fencingToken: leases[0].fencingToken } });
    expect(await a.inspectAll('shelf')).toEqual([]);
    expect(await b.forceRelease('shelf', { reason: 'test: nothing left' })).toEqual({ outcome: 'not-held' });
  });

  describe.each([
    ['in one store call (tryAcquireAll)', false],
    ['key by key', true],
  ] as const)('lock sets mixing modes, %s', (_label, keyByKey) => {
    it('reads some keys and writes others, all or none', async () => {
      const [a, b] = await twoReplicas(`rw-sets-${keyByKey}`, keyByKey);
      const count = new HolderCount();
      const gate = new Gate();
      // b reads the catalog; a reads it too while writing the index.
      const reading = holding(b, 'catalog', count, () => gate.open, { mode: 'shared' });
      await count.when((c) => c.readers === 1);
      const set = await a.acquireMany([{ key: 'catalog', mode: 'shared' }, 'index']);
      expect(set.map((lock) => [lock.key, lock.mode])).toEqual([
        ['catalog', 'shared'],
        ['index', 'exclusive'],
      ]);
      // The written key is taken, the read one is still open to readers, closed to writers.
      expect(await b.tryAcquire('index', { mode: 'shared' })).toBeNull();
      const reader = await b.tryAcquire('catalog', { mode: 'shared' });
      expect(reader).not.toBeNull();
      await reader?.release();
      expect(await b.tryAcquireMany(['catalog', 'other'])).toMatchObject({ acquired: [], unavailable: [{ key: 'catalog' }] });
      await a.releaseAll(set);
      gate.release();
      await reading;
      await expect(a.acquireMany([{ key: 'x', mode: 'shared' }, { key: 'x' }])).rejects.toThrow(/named twice/);
      expect(count.violations).toEqual([]);
    });
  });
});
