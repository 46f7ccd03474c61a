import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileLockBackend, LockOptionsError } from '../../lib';
import { ExclusiveCreateMechanism } from '../../lib/backends/file/exclusive-create.mechanism';
import { keyFiles } from '../../lib/backends/file/lock-file-names';
import type { StoredRecord } from '../../lib/backends/file/holder-record-format';
import { alternated, checkOverlaps } from '../support/overlap-checker';
import { epochNow, Kit } from './file-test-kit';
import { PROCESS_TEST_TIMEOUT_MS } from '../support/processes';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

function identity(ttlMs: number, pid = process.pid): StoredRecord {
  const grantId = Math.random().toString(16).slice(2, 18).padEnd(16, '0');
  return { v: 1, grantId, key: 'race', ownerId: 'race', instanceId: 'race', hostname: hostname(), pid, mode: 'exclusive', acquiredAt: Date.now(), ttlMs, fencingToken: 0 };
}

/** The degraded exclusive-create mode, forced: what runs where the filesystem has no OS locks. */
describe('file backend, degraded mode (exclusive-create, forced)', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it('3 processes x 50 acquisitions started together: zero overlaps, fencing tokens strictly increasing, turns alternate', async () => {
    const dir = kit.tempDir();
    const log = join(dir, 'overlap.log');
    const go = join(dir, 'go');
    const workers = Array.from({ length: 3 }, (_, index) =>
      kit.start({ dir, key: 'contended', action: 'loop', iterations: 50, log, name: `p${index}`, mechanism: 'exclusive-create', go }),
    );
    await Promise.all(workers.map((worker) => worker.line(/^ready$/)));
    writeFileSync(go, '');
    const results = await Promise.all(workers.map((worker) => worker.line(/^done (.*)$/)));
    for (const [, json] of results) expect(JSON.parse(json)).toEqual({ skipped: 0 });
    const report = checkOverlaps(log);
    console.log(`[file] exclusive-create, 3 x 50 contended acquisitions: ${JSON.stringify(report)}`);
    expect(report).toMatchObject({ entries: 150, overlaps: 0, fencingViolations: 0, perHolder: { p0: 50, p1: 50, p2: 50 } });
    expect({ handovers: report.handovers, alternated: alternated(report) }).toEqual({ handovers: report.handovers, alternated: true });
    // Every worker said, in its log, that crash safety is now TTL-bound.
    for (const worker of workers) expect(worker.lines.join('\n')).toMatch(/Crash safety is now bounded by the TTL/);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('a SIGKILLed holder blocks the key until its TTL runs out; then one waiter takes over and its onStale sees the holder', async () => {
    const dir = kit.tempDir();
    const ttlMs = 900;
    const holder = kit.start({ dir, key: 'crashy', action: 'hold', ttlMs, mechanism: 'exclusive-create' });
    const held = await holder.acquired();
    const waiter = kit.start({ dir, key: 'crashy', action: 'hold', ttlMs, waitMs: 20_000, announceBusy: true, mechanism: 'exclusive-create' });
    await waiter.line(/^first-attempt-busy$/);
    const killedAt = epochNow();
    holder.child.kill('SIGKILL');
    const granted = await waiter.acquired();
    const tookMs = granted.at - killedAt;
    console.log(`[file] exclusive-create: SIGKILL -> takeover after ${tookMs.toFixed(0)} ms (ttl ${ttlMs} ms, heartbeat ${ttlMs / 3} ms)`);
    // Not the kernel path's immediate release: the claim stays valid for about 2/3 ttl after the
    // kill (the last heartbeat came at most ttl/3 before it); ttl/3 leaves room for late heartbeats.
    expect(tookMs).toBeGreaterThanOrEqual(ttlMs / 3);
    expect(tookMs).toBeLessThan(ttlMs + 3_000);
    expect(granted.fencingToken).toBeGreaterThan(held.fencingToken);
    const [, json] = await waiter.line(/^stale (.*)$/);
    const stale = JSON.parse(json) as Record<string, unknown>;
    expect(stale).toMatchObject({ pid: holder.pid, fencingToken: held.fencingToken, detectedBy: 'acquire', key: 'lock:crashy' });
    expect(String(stale.stale)).toMatch(/not refreshed/);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('many contenders taking over one abandoned claim at the same moment: exactly one wins, every round', async () => {
    const dir = kit.tempDir();
    const files = keyFiles(dir, 'race');
    const mechanisms = Array.from({ length: 6 }, () => new ExclusiveCreateMechanism());
    for (let round = 0; round < 25; round++) {
      // An abandoned claim: its 1 ms TTL has passed once the next claim scans it.
      const abandoned = await mechanisms[0].claim(files, 'exclusive', identity(1, 999_999_999));
      expect(abandoned.claim).not.toBeNull();
      const deadline = Date.now() + 5;
      while (Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));

      const attempts = await Promise.all(mechanisms.map((mechanism) => mechanism.claim(files, 'exclusive', identity(60_000))));
      const winners = attempts.filter((attempt) => attempt.claim !== null);
      expect(winners).toHaveLength(1);
      const [winner] = winners;
      expect(winner.claim && 'tookOver' in winner ? winner.tookOver : undefined).toMatch(/not refreshed/);
      // The abandoned holder, were it only paused, learns it lost the claim.
      expect(await abandoned.claim!.refresh(1)).toBe(false);
      expect(await winner.claim!.release()).toBe(true);
    }
  });

  it('a holder that slept through several generations never believes it still holds', async () => {
    const files = keyFiles(kit.tempDir(), 'sleepy');
    const mechanism = new ExclusiveCreateMechanism();
    const sleepy = (await mechanism.claim(files, 'exclusive', identity(1))).claim!;
    const deadline = Date.now() + 5;
    while (Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
    const second = (await mechanism.claim(files, 'exclusive', identity(60_000))).claim!;
    await second.release();
    // The third holder cleans up every older generation, the second's included.
    const third = (await mechanism.claim(files, 'exclusive', identity(60_000))).claim!;
    expect([sleepy.fencingToken, second.fencingToken, third.fencingToken]).toEqual([1, 2, 3]);
    expect(await sleepy.refresh(1)).toBe(false);
    expect(await sleepy.refresh(60_000)).toBe(false);
    expect(await sleepy.release()).toBe(false);
    expect(await third.refresh(60_000)).toBe(true);
    expect(await third.release()).toBe(true);
  });

  it('reaps a live holder of another process on forceRelease (a lease, not a kernel lock)', async () => {
    const dir = kit.tempDir();
    const holder = kit.start({ dir, key: 'reap', action: 'hold', mechanism: 'exclusive-create' });
    const held = await holder.acquired();
    const backend = new FileLockBackend({ dir, mechanism: 'exclusive-create' });
    try {
      const outcome = await backend.forceRelease({ key: 'lock:reap', reason: 'test' });
      expect(outcome).toMatchObject({ outcome: 'released', previous: { pid: holder.pid, fencingToken: held.fencingToken } });
      const owner = { ownerId: 'me', instanceId: 'me', hostname: hostname(), pid: process.pid };
      const next = await backend.tryAcquire({ key: 'lock:reap', token: 'next', ttlMs: 10_000, mode: 'exclusive', owner });
      expect(next).toEqual({ acquired: true, fencingToken: expect.any(Number) });
      if (next.acquired) expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    } finally {
      await backend.close();
    }
  }, PROCESS_TEST_TIMEOUT_MS);

  it('refuses to share a directory with processes on the other mechanism', async () => {
    const dir = kit.tempDir();
    const kernel = new FileLockBackend({ dir, mechanism: 'auto' });
    const degraded = new FileLockBackend({ dir, mechanism: 'exclusive-create' });
    try {
      expect(await kernel.mechanism()).toBe('kernel');
      await expect(degraded.init()).rejects.toThrow(LockOptionsError);
      await expect(degraded.init()).rejects.toThrow(/used with the 'kernel' mechanism/);
    } finally {
      await kernel.close();
      await degraded.close();
    }
  });
});
