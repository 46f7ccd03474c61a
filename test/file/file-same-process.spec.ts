import { Test } from '@nestjs/testing';
import type { INestApplicationContext } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { isSkipped, LockModule, SpaceLockService, type HeldLock } from '../../lib';
import { Kit } from './file-test-kit';
import { PROCESS_TEST_TIMEOUT_MS } from '../support/processes';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

/** One process, several callers and several module instances on one lock directory. */
describe('file backend inside one process', () => {
  const kit = new Kit();
  const apps: INestApplicationContext[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    await kit.cleanup();
  });

  async function moduleInstance(dir: string): Promise<SpaceLockService> {
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot({ backend: 'file', file: { dir } })] }).compile();
    const app = await moduleRef.init();
    apps.push(app);
    return app.get(SpaceLockService);
  }

  it('readers queued behind a writer of this process stay out while it holds, and go in together when it leaves', async () => {
    const locks = await moduleInstance(kit.tempDir());
    const writer = await locks.acquire('doc');
    let writerLeft = false;
    const enteredWhileWriterHeld: number[] = [];
    let inside = 0;
    let maxInside = 0;
    // Each call queues behind this module instance's writer as it is made (no store call, no timer).
    const readers = [0, 1, 2].map((reader) =>
      locks.withSpaceLock(
        'doc',
        async () => {
          if (!writerLeft) enteredWhileWriterHeld.push(reader);
          inside += 1;
          maxInside = Math.max(maxInside, inside);
          // Stay until all three are in (each shared grant writes its own record file, which a
          // busy machine can delay), or long enough to show that they were let in one by one.
          const giveUpAt = performance.now() + 5_000;
          while (maxInside < 3 && performance.now() < giveUpAt) await new Promise((resolve) => setTimeout(resolve, 5));
          inside -= 1;
          return reader;
        },
        { mode: 'shared', waitMs: 10_000 },
      ),
    );
    // Held: none of them gets in, however long the writer keeps it; a new reader is refused.
    expect(await locks.tryAcquire('doc', { mode: 'shared' })).toBeNull();
    await new Promise((resolve) => setImmediate(resolve));
    expect(inside).toBe(0);
    writerLeft = true;
    await writer.release();
    // Every reader ran (none gave up or was skipped), all after the writer, all at the same time.
    expect(await Promise.all(readers)).toEqual([0, 1, 2]);
    expect(enteredWhileWriterHeld).toEqual([]);
    expect(maxInside).toBe(3);
  });

  it('two withSpaceLock calls on one key: the second is in-progress; shared re-entry works', async () => {
    const locks = await moduleInstance(kit.tempDir());
    let release!: () => void;
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = locks.withSpaceLock('job', () => {
      entered();
      return new Promise<string>((resolve) => (release = () => resolve('first')));
    });
    await inside;
    expect(await locks.withSpaceLock('job', () => 'second')).toEqual({ skipped: 'in-progress' });
    release();
    expect(await first).toBe('first');

    const nested = await locks.withSpaceLock(
      'catalog',
      (outer) => locks.withSpaceLock('catalog', (inner) => [outer.fencingToken, inner.fencingToken, inner.mode], { mode: 'shared' }),
      { mode: 'shared' },
    );
    expect(isSkipped(nested)).toBe(false);
    expect(nested).toEqual([expect.any(Number), expect.any(Number), 'shared']);
    expect(await locks.inspectAll('catalog')).toEqual([]);
  });

  it('two module instances: exclusive conflicts answer at once, shared holders share one kernel lock, no self-deadlock', async () => {
    const dir = kit.tempDir();
    const [one, two] = [await moduleInstance(dir), await moduleInstance(dir)];

    const exclusive = await one.acquire('key');
    const started = performance.now();
    expect(await two.tryAcquire('key')).toBeNull();
    expect(await two.tryAcquire('key', { mode: 'shared' })).toBeNull();
    expect(performance.now() - started).toBeLessThan(500);
    await exclusive.release();

    const readers: HeldLock[] = [await one.acquire('key', { mode: 'shared' }), await two.acquire('key', { mode: 'shared' })];
    expect(readers[0].fencingToken).toBe(readers[1].fencingToken);
    expect((await one.inspectAll('key')).map((info) => info.mode)).toEqual(['shared', 'shared']);

    // A writer of this process waits for this process's readers instead of deadlocking on them.
    const writer = two.acquire('key', { waitMs: 5_000 });
    await readers[0].release();
    const released = performance.now();
    await readers[1].release();
    const granted = await writer;
    console.log(`[file] in-process readers -> writer of another module instance: ${(performance.now() - released).toFixed(2)} ms`);
    expect(granted.fencingToken).toBeGreaterThan(readers[0].fencingToken);
    expect((await one.inspectAll('key')).map((info) => [info.mode, info.local])).toEqual([['exclusive', false]]);
    await granted.release();
  });

  it('hands an exclusive lease to a local waiter with a new fencing token, never free in between: a waiting process keeps waiting', async () => {
    const dir = kit.tempDir();
    const locks = await moduleInstance(dir);
    const first = await locks.acquire('queue');
    // Another process waits too; its fallback re-check is far off, so only the lock file's changes wake it.
    const other = kit.start({ dir, key: 'queue', action: 'hold', waitMs: 120_000, announceBusy: true, recheckMs: 60_000 });
    await other.line(/^first-attempt-busy$/);
    const waiting = locks.acquire('queue', { waitMs: 10_000 });
    await first.release();
    const second = await waiting;
    expect(second.fencingToken).toBe(first.fencingToken + 1);
    // Had the release let the lock go, the waiting process could have taken it: it did not.
    expect(other.lines.filter((line) => line.startsWith('acquired'))).toEqual([]);
    expect((await locks.inspectAll('queue')).map((info) => [info.fencingToken, info.local])).toEqual([[second.fencingToken, true]]);
    await second.release();
    // Now the other process gets its turn.
    expect((await other.acquired()).fencingToken).toBe(second.fencingToken + 1);
  }, PROCESS_TEST_TIMEOUT_MS);
});
