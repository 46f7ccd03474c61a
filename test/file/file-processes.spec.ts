import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alternated, checkOverlaps } from '../support/overlap-checker';
import { epochNow, Kit, type Worker } from './file-test-kit';
import { PROCESS_TEST_TIMEOUT_MS } from '../support/processes';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

/**
 * Real processes on real kernel locks. Timings are measured and printed for the report; the
 * assertions only use bounds far above them so a loaded machine does not flake.
 */
describe('file backend across processes (kernel locks)', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it('exclusive vs exclusive, shared vs shared, shared vs exclusive; the writer waits for the last reader', async () => {
    const dir = kit.tempDir();
    const key = 'report';
    const writer = kit.start({ dir, key, action: 'hold' });
    const first = await writer.acquired();

    const [otherWriter, reader] = [
      kit.start({ dir, key, action: 'hold' }),
      kit.start({ dir, key, action: 'hold', mode: 'shared' }),
    ];
    await Promise.all([otherWriter.line(/^busy$/), reader.line(/^busy$/)]);
    await writer.release();

    const readers = [kit.start({ dir, key, action: 'hold', mode: 'shared' }), kit.start({ dir, key, action: 'hold', mode: 'shared' })];
    const [one, two] = await Promise.all(readers.map((worker) => worker.acquired()));
    // Readers share the token of the last writer: a later writer's token is above both.
    expect(one.fencingToken).toBe(first.fencingToken);
    expect(two.fencingToken).toBe(first.fencingToken);

    // A 10 s fallback re-check: only the release itself (the directory watch) can wake it in time.
    const waitingWriter = kit.start({ dir, key, action: 'hold', waitMs: 20_000, announceBusy: true, recheckMs: 10_000 });
    await waitingWriter.line(/^first-attempt-busy$/);
    const firstReaderLeft = await readers[0].release();
    const lastReaderLeft = await readers[1].release();
    const granted = await waitingWriter.acquired();

    expect(granted.at).toBeGreaterThan(firstReaderLeft);
    expect(granted.at).toBeGreaterThan(lastReaderLeft);
    expect(granted.fencingToken).toBeGreaterThan(first.fencingToken);
    const handOffMs = granted.at - lastReaderLeft;
    console.log(`[file] last reader released -> waiting writer (another process) acquired: ${handOffMs.toFixed(2)} ms`);
    expect(handOffMs).toBeLessThan(2_000);
  });

  it('4 processes x 200 acquisitions started together: zero overlaps, fencing tokens strictly increasing, turns alternate', async () => {
    const dir = kit.tempDir();
    const log = join(dir, 'overlap.log');
    const go = join(dir, 'go');
    const workers = Array.from({ length: 4 }, (_, index) =>
      kit.start({ dir, key: 'contended', action: 'loop', iterations: 200, log, name: `p${index}`, go }),
    );
    await Promise.all(workers.map((worker) => worker.line(/^ready$/)));
    writeFileSync(go, '');
    const started = epochNow();
    const results = await Promise.all(workers.map((worker) => worker.line(/^done (.*)$/)));
    const elapsed = epochNow() - started;

    for (const [, json] of results) expect(JSON.parse(json)).toEqual({ skipped: 0 });
    // Records go before the lock does: 800 clean hand-offs and not one false stale report.
    for (const worker of workers) expect(worker.lines.filter((line) => line.startsWith('stale'))).toEqual([]);
    const report = checkOverlaps(log);
    console.log(`[file] 4 x 200 contended acquisitions in ${Math.round(elapsed)} ms: ${JSON.stringify(report)}`);
    expect(report).toMatchObject({ entries: 800, overlaps: 0, fencingViolations: 0, perHolder: { p0: 200, p1: 200, p2: 200, p3: 200 } });
    // They contended: the lock went back and forth between processes, not once round (3 handovers).
    expect({ handovers: report.handovers, alternated: alternated(report) }).toEqual({ handovers: report.handovers, alternated: true });
  }, PROCESS_TEST_TIMEOUT_MS);

  it('SIGKILL of the holder: a waiting process gets the lock at once and its onStale sees the dead holder', async () => {
    const dir = kit.tempDir();
    const key = 'crashy';
    let holder: Worker = kit.start({ dir, key, action: 'hold' });
    let held = await holder.acquired();
    const figures: number[] = [];
    for (let round = 0; round < 3; round++) {
      // A 10 s fallback re-check: only watching the holder's pid can notice the kill in time.
      const waiter = kit.start({ dir, key, action: 'hold', waitMs: 20_000, announceBusy: true, recheckMs: 10_000 });
      await waiter.line(/^first-attempt-busy$/);
      const killedAt = epochNow();
      holder.child.kill('SIGKILL');
      const granted = await waiter.acquired();
      figures.push(granted.at - killedAt);

      const [, json] = await waiter.line(/^stale (.*)$/);
      const stale = JSON.parse(json) as Record<string, unknown>;
      expect(stale).toMatchObject({
        key: `lock:${key}`,
        pid: holder.pid,
        mode: 'exclusive',
        fencingToken: held.fencingToken,
        detectedBy: 'acquire',
      });
      expect(String(stale.stale)).toContain(`pid ${holder.pid}`);
      expect(granted.fencingToken).toBe(held.fencingToken + 1);
      holder = waiter;
      held = granted;
    }
    console.log(`[file] SIGKILL -> next process holds the lock: ${figures.map((ms) => ms.toFixed(1)).join(', ')} ms`);
    // The target is 50 ms; assert far above it to stay stable under load, yet far below the re-check.
    for (const ms of figures) expect(ms).toBeLessThan(2_000);
  }, PROCESS_TEST_TIMEOUT_MS);
});
