import { Test } from '@nestjs/testing';
import { lookup } from 'node:dns/promises';
import { readdirSync, readlinkSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { LockModule, LockTimeoutError, SpaceLockService } from '../../lib';
import { Kit } from './file-test-kit';
import { PROCESS_TEST_TIMEOUT_MS } from '../support/processes';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

/** Every descriptor of this process with what it points to. */
function openFds(): Map<string, string> {
  const fds = new Map<string, string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      fds.set(fd, readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      // The descriptor readdir itself used, closed by now.
    }
  }
  return fds;
}

describe('file backend: waiting for another process', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it('keeps the event loop and the thread pool free, leaves no fd, thread or lock behind on timeout', async () => {
    const dir = kit.tempDir();
    const holder = kit.start({ dir, key: 'busy', action: 'hold' });
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ backend: 'file', file: { dir } })],
    }).compile();
    const app = await moduleRef.init();
    const locks = app.get(SpaceLockService);
    try {
      await holder.acquired();
      // Warm up what lives as long as the process anyway: the watch (started by a first wait),
      // the thread pool, and the idle descriptor kept for the lock file of a key in use.
      expect(await locks.tryAcquire('busy', { waitMs: 50 })).toBeNull();
      await Promise.all(Array.from({ length: 8 }, () => stat(dir)));
      const fdsBefore = openFds();
      const threadsBefore = readdirSync('/proc/self/task').length;

      const waitMs = 2_000;
      let ticks = 0;
      let longestGap = 0;
      let last = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        longestGap = Math.max(longestGap, now - last);
        last = now;
        ticks += 1;
      }, 2);
      const started = performance.now();
      let waitEnded = false;
      const waiting = locks.acquire('busy', { waitMs }).then(
        () => 'acquired',
        (error: unknown) => error,
      ).finally(() => (waitEnded = true));
      // While it waits, the pool still serves fs and dns: they finish before the wait does.
      // (A waiter parked on a pool thread, like the addon's blocking lock, would hold them back.)
      await new Promise((resolve) => setTimeout(resolve, 100));
      const poolStarted = performance.now();
      await Promise.all([...Array.from({ length: 16 }, () => stat(dir)), lookup('localhost')]);
      const poolMs = performance.now() - poolStarted;
      expect(waitEnded).toBe(false);
      const outcome = await waiting;
      const waitedMs = performance.now() - started;
      clearInterval(ticker);

      expect(outcome).toBeInstanceOf(LockTimeoutError);
      expect(waitedMs).toBeGreaterThanOrEqual(waitMs - 10);
      console.log(`[file] during a ${waitMs} ms wait: ${ticks} ticks of a 2 ms interval, longest gap ${longestGap.toFixed(1)} ms; 16 stats + 1 dns lookup took ${poolMs.toFixed(1)} ms`);
      // The event loop kept turning all along: a blocking wait would freeze it for the whole wait
      // (the bound leaves a busy machine room; the measured gap is printed above).
      expect(longestGap).toBeLessThan(waitMs / 2);

      const fdsAfter = openFds();
      expect(new Set(fdsAfter.values())).toEqual(new Set(fdsBefore.values()));
      expect(readdirSync('/proc/self/task').length).toBe(threadsBefore);

      // Nothing of ours holds the key: once the holder leaves, another process takes it at once.
      await holder.release();
      const next = kit.start({ dir, key: 'busy', action: 'hold' });
      await next.acquired();
    } finally {
      await app.close();
    }
  }, PROCESS_TEST_TIMEOUT_MS);
});
