import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import type { ModuleRef } from '@nestjs/core';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpaceLockService } from '../../lib';
import { createLockBackend } from '../../lib/backends/lock-backend.factory';
import type { HolderView } from '../../lib/cli/format';
import { resolveLockOptions } from '../../lib/lock-options.validation';
import { alternated, checkOverlaps } from '../support/overlap-checker';
import { killAll, waitForLine, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { runCliProcess, startHolder, startWorker, stopWorkers, uniquePrefix } from './ops-support';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

describe('operating locks on the file backend (real lock directory, real processes)', () => {
  let dir: string;
  const keyPrefix = uniquePrefix('file');
  /** This test process as a long-running app on the same directory (opened before anyone dies). */
  let locks: SpaceLockService;
  const workers = {} as Record<'alpha' | 'beta' | 'doomedA' | 'doomedB', ChildProcess>;

  beforeAll(async () => {
    Logger.overrideLogger(['error']);
    dir = mkdtempSync(join(tmpdir(), 'nestjs-lock-ops-file-'));
    const options = resolveLockOptions({ backend: 'file', file: { dir }, keyPrefix, ownerId: 'ops-test' });
    locks = new SpaceLockService(options, await createLockBackend({ options, moduleRef: {} as ModuleRef }));
    await locks.onApplicationBootstrap();
    const base = { store: { dir }, keyPrefix };
    [workers.alpha, workers.beta, workers.doomedA, workers.doomedB] = await Promise.all([
      startHolder({ ...base, ownerId: 'alpha' }, ['invoice:1', 'p:2']),
      startHolder({ ...base, ownerId: 'beta' }, ['report:7']),
      startHolder({ ...base, ownerId: 'doomed-a' }, ['doomed:1', 'doomed:2']),
      startHolder({ ...base, ownerId: 'doomed-b' }, ['doomed:3']),
    ]);
  }, PROCESS_TEST_TIMEOUT_MS);
  afterAll(async () => {
    await stopWorkers();
    await locks?.beforeApplicationShutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => runCliProcess([...args, '--dir', dir, '--key-prefix', keyPrefix]);

  it('list and inspect show the holders of every process with pids, owners and no expiry', async () => {
    const [listed, table, inspected] = await Promise.all([
      cli('list', '--json', '--prefix', 'invoice:'),
      cli('list', '--limit', '100'),
      cli('inspect', 'report:7', 'nobody:here'),
    ]);
    expect(inspected.code).toBe(0);
    expect(inspected.stdout).toMatch(new RegExp(`^report:7\\s+exclusive\\s+beta\\s+\\S+\\s+${workers.beta.pid}\\s+yes\\s`, 'm'));
    expect(inspected.stdout).toContain('"nobody:here" is free.');
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as HolderView[]).map(({ key, ownerId, pid, alive, expiresInMs, stale }) => ({
      key,
      ownerId,
      pid,
      alive,
      expiresInMs,
      stale,
    }))).toEqual([{ key: 'invoice:1', ownerId: 'alpha', pid: workers.alpha.pid, alive: true, expiresInMs: null, stale: undefined }]);

    expect(table.code).toBe(0);
    const rows = table.stdout.trimEnd().split('\n').slice(1);
    const expected: [string, string, ChildProcess][] = [
      ['doomed:1', 'doomed-a', workers.doomedA],
      ['doomed:2', 'doomed-a', workers.doomedA],
      ['doomed:3', 'doomed-b', workers.doomedB],
      ['invoice:1', 'alpha', workers.alpha],
      ['p:2', 'alpha', workers.alpha],
      ['report:7', 'beta', workers.beta],
    ];
    expect(rows).toHaveLength(expected.length);
    expected.forEach(([key, owner, worker], index) =>
      expect(rows[index]).toMatch(new RegExp(`^${key}\\s+exclusive\\s+${owner}\\s+\\S+\\s+${worker.pid}\\s+yes\\s+\\S+\\s+-\\s+\\d+$`)),
    );
  });

  it('forceRelease of a live holder answers held-by-live-process (API and CLI), and the lock stays held', async () => {
    expect(await locks.forceRelease('report:7', { reason: 'test' })).toMatchObject({
      outcome: 'held-by-live-process',
      pid: workers.beta.pid,
    });
    const reaped = await cli('reap', 'report:7', '--reason', 'looks stuck', '--yes');
    expect(reaped.code).toBe(3);
    expect(reaped.stdout).toContain(`"report:7" is held by live process ${workers.beta.pid}`);
    expect(reaped.stderr).toMatch(/warn: forceRelease "report:7" by nestjs-lock-cli:.* \(reason: looks stuck\): held-by-live-process/);
    expect(await locks.inspect('report:7')).toMatchObject({ ownerId: 'beta', pid: workers.beta.pid });
  });

  it('a SIGKILLed holder is listed as stale, not hidden; forceRelease cleans its record', async () => {
    await killAll([workers.doomedA]);
    const dead = workers.doomedA.pid;

    const listed = await locks.list({ prefix: 'doomed:' });
    expect(listed.filter((info) => info.pid === dead).map(({ key, stale }) => ({ key, stale: typeof stale }))).toEqual([
      { key: 'doomed:1', stale: 'string' },
      { key: 'doomed:2', stale: 'string' },
    ]);

    expect(await locks.forceRelease('doomed:1', { reason: 'holder crashed' })).toMatchObject({
      outcome: 'released',
      previous: { ownerId: 'doomed-a', pid: dead },
    });
    expect(await locks.inspectAll('doomed:1')).toEqual([]);

    // The CLI shows the dead holder it finds (the directory's opening sweep removes the record).
    const table = await cli('list', '--prefix', 'doomed:');
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^doomed:2\\s+exclusive\\s+doomed-a\\s+\\S+\\s+${dead}\\s+no\\s.*STALE: `, 'm'));
    expect(table.stdout).not.toMatch(/^doomed:1\s/m);
    expect(await locks.inspectAll('doomed:2')).toEqual([]);
  });

  it('CLI reap of a dead holder removes its record (exit 0) and the key is free', async () => {
    await killAll([workers.doomedB]);
    const reaped = await cli('reap', 'doomed:3', '--reason', 'holder crashed', '--yes', '--json');
    expect(reaped.code).toBe(0);
    expect(JSON.parse(reaped.stdout)).toMatchObject({
      key: 'doomed:3',
      outcome: 'released',
      previous: { ownerId: 'doomed-b', pid: workers.doomedB.pid },
    });
    expect(await locks.inspectAll('doomed:3')).toEqual([]);
    const lock = await locks.acquire('doomed:3');
    await lock.release();
  });

  it('tryAcquireMany with partial takes what is free and names the live holder of the rest', async () => {
    const some = await locks.tryAcquireMany(['p:3', 'p:2', 'p:1'], { partial: true });
    try {
      expect(some.acquired.map((lock) => lock.key)).toEqual(['p:1', 'p:3']);
      expect(some.unavailable).toEqual([
        expect.objectContaining({ key: 'p:2', reason: 'lock-held', holder: expect.objectContaining({ ownerId: 'alpha', pid: workers.alpha.pid }) }),
      ]);
    } finally {
      await locks.releaseAll(some.acquired);
    }
  });

  it('lock sets: two processes taking overlapping sets in opposite orders never deadlock and never overlap', async () => {
    const setsDir = mkdtempSync(join(tmpdir(), 'nestjs-lock-ops-file-sets-'));
    try {
      const overlapLog = join(setsDir, 'overlap.log');
      const go = join(setsDir, 'go');
      const rounds = 20;
      const base = { store: { dir: join(setsDir, 'locks') }, keyPrefix: uniquePrefix('file-sets') };
      const sets = [
        { name: 'forward', keys: ['set:a', 'set:shared-1', 'set:shared-2'] },
        { name: 'backward', keys: ['set:shared-2', 'set:shared-1', 'set:b'] },
      ];
      const running = sets.map(({ name, keys }) =>
        startWorker({ ...base, ownerId: name, task: { kind: 'sets', keys, rounds, overlapLog, name, fencedBy: 'set:shared-1', go } }),
      );
      // Both finished starting before either takes a set: they contend from the first round.
      await Promise.all(running.map((worker) => waitForLine(worker, /^set-ready$/)));
      writeFileSync(go, '');
      const done = await Promise.all(running.map((worker) => waitForLine(worker, /^done (\d+) (\d+)$/)));
      expect(done.map(([, finished, skipped]) => [Number(finished), Number(skipped)])).toEqual([
        [rounds, 0],
        [rounds, 0],
      ]);
      const report = checkOverlaps(overlapLog);
      console.log(`[file] two processes, overlapping sets in opposite orders: ${JSON.stringify(report)}`);
      expect(report).toMatchObject({ entries: 2 * rounds, overlaps: 0, fencingViolations: 0, perHolder: { forward: rounds, backward: rounds } });
      // Their sets really met: the shared keys changed hands between them more than once.
      expect({ handovers: report.handovers, alternated: alternated(report) }).toEqual({ handovers: report.handovers, alternated: true });
    } finally {
      rmSync(setsDir, { recursive: true, force: true });
    }
  }, PROCESS_TEST_TIMEOUT_MS);
});
