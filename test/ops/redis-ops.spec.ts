import 'reflect-metadata';
import type { ChildProcess } from 'node:child_process';
import { Logger } from '@nestjs/common';
import type { ModuleRef } from '@nestjs/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpaceLockService } from '../../lib';
import { createLockBackend } from '../../lib/backends/lock-backend.factory';
import { runCli } from '../../lib/cli/run';
import type { HolderView } from '../../lib/cli/format';
import { resolveLockOptions } from '../../lib/lock-options.validation';
import { alternated, checkOverlaps } from '../support/overlap-checker';
import { waitForLine, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { RedisServer } from '../support/redis-server';
import {
  heldPattern,
  lostPattern,
  recordingIo,
  runCliProcess,
  startHolder,
  startWorker,
  stopWorkers,
  uniquePrefix,
} from './ops-support';
import { settleWithin } from '../../lib/settle-within';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

describe('operating locks on Redis (private redis-server, real processes)', () => {
  let redis: RedisServer;
  let scratch: string;
  beforeAll(async () => {
    redis = await RedisServer.start();
    scratch = mkdtempSync(join(tmpdir(), 'nestjs-lock-ops-redis-'));
    // The in-process CLI runs log reaps at warn; keep the test output for failures.
    Logger.overrideLogger(['error']);
  }, PROCESS_TEST_TIMEOUT_MS);
  afterAll(async () => {
    await redis?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });
  afterAll(stopWorkers);

  const cli = (keyPrefix: string, ...args: string[]) =>
    runCliProcess([...args, '--redis', redis.url, '--key-prefix', keyPrefix]);

  /** Two app processes holding locks under one prefix, shared by the tests that only look (or reap their own key). */
  const shared = {} as { keyPrefix: string; billing: ChildProcess; reports: ChildProcess };
  beforeAll(async () => {
    shared.keyPrefix = uniquePrefix('redis');
    const base = { store: { redis: redis.url }, keyPrefix: shared.keyPrefix, ttlMs: 10_000 };
    [shared.billing, shared.reports] = await Promise.all([
      startHolder({ ...base, ownerId: 'billing-worker' }, ['invoice:1', 'p:2']),
      startHolder({ ...base, ownerId: 'report-worker' }, ['report:7', 'nightly']),
    ]);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('list and inspect show the holders of two processes with their pids and owners', async () => {
    const { keyPrefix, billing, reports } = shared;
    const [listed, table] = await Promise.all([
      cli(keyPrefix, 'list', '--json'),
      cli(keyPrefix, 'inspect', 'report:7', 'invoice:1', 'nobody:here'),
    ]);
    expect(listed.code).toBe(0);
    const records = (JSON.parse(listed.stdout) as HolderView[]).sort((a, b) => a.key.localeCompare(b.key));
    expect(records.map(({ key, ownerId, pid, alive, stale }) => ({ key, ownerId, pid, alive, stale }))).toEqual([
      { key: 'invoice:1', ownerId: 'billing-worker', pid: billing.pid, alive: true, stale: undefined },
      { key: 'nightly', ownerId: 'report-worker', pid: reports.pid, alive: true, stale: undefined },
      { key: 'p:2', ownerId: 'billing-worker', pid: billing.pid, alive: true, stale: undefined },
      { key: 'report:7', ownerId: 'report-worker', pid: reports.pid, alive: true, stale: undefined },
    ]);
    for (const record of records) {
      expect(record).toMatchObject({ mode: 'exclusive', local: false, holderCount: 1, ttlMs: 10_000 });
      expect(record.fencingToken).toBeGreaterThan(0);
      expect(record.ageMs).toBeGreaterThanOrEqual(0);
      expect(record.expiresInMs).toBeGreaterThan(0);
      expect(record.expiresInMs).toBeLessThanOrEqual(10_000);
      expect(typeof record.instanceId).toBe('string');
    }

    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^KEY\s+MODE\s+OWNER\s+HOST\s+PID\s+ALIVE\s+AGE\s+EXPIRES IN\s+FENCE\s+STALE$/);
    expect(lines[1]).toMatch(new RegExp(`^report:7\\s+exclusive\\s+report-worker\\s+\\S+\\s+${reports.pid}\\s+yes\\s`));
    expect(lines[2]).toMatch(new RegExp(`^invoice:1\\s+exclusive\\s+billing-worker\\s+\\S+\\s+${billing.pid}\\s+yes\\s`));
    expect(lines[3]).toBe('"nobody:here" is free.');
  });

  it('reap: refused without a terminal, compare-aware, then the holder is aborted and a waiter gets the lock at once', async () => {
    const keyPrefix = uniquePrefix('redis');
    // A long lease: if the waiter got the key only when it expired, the test would time out.
    const base = { store: { redis: redis.url }, keyPrefix, ttlMs: 30_000, heartbeatMs: 300 };
    const holder = startWorker({ ...base, ownerId: 'stuck-worker', task: { kind: 'hold', keys: ['job:stuck'] } });
    const waiter = startWorker({ ...base, ownerId: 'next-worker', task: { kind: 'wait', key: 'job:stuck', waitMs: 150_000 } });
    const [[, holderToken]] = await Promise.all([waitForLine(holder, heldPattern('job:stuck')), waitForLine(waiter, /^waiting /)]);
    // Listening from here (the CLI runs below take seconds each): only a hang may time these out.
    const holderLost = waitForLine(holder, lostPattern('job:stuck'));
    const waiterGot = waitForLine(waiter, heldPattern('job:stuck'));
    // Judged after the reap; until then a rejection is not yet ours to handle.
    holderLost.catch(() => undefined);
    waiterGot.catch(() => undefined);

    const stale = Number(holderToken) + 100;
    const [refused, changed] = await Promise.all([
      cli(keyPrefix, 'reap', 'job:stuck', '--reason', 'stuck since deploy'),
      cli(keyPrefix, 'reap', 'job:stuck', '--reason', 'stuck since deploy', '--yes', '--expect-token', String(stale)),
    ]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/not a terminal/);
    expect(changed.code).toBe(3);
    expect(changed.stdout).toContain(`changed hands and is now held by stuck-worker (pid ${holder.pid}`);
    expect(changed.stdout).toContain(`--expect-token ${holderToken}`);

    const reaped = await cli(keyPrefix, 'reap', 'job:stuck', '--reason', 'stuck since deploy', '--yes', '--json', '--caller', 'ops:alice');
    expect(reaped.code).toBe(0);
    expect(JSON.parse(reaped.stdout)).toMatchObject({
      key: 'job:stuck',
      outcome: 'released',
      previous: { ownerId: 'stuck-worker', pid: holder.pid, fencingToken: Number(holderToken) },
    });
    expect(reaped.stderr).toMatch(/warn: forceRelease "job:stuck" by ops:alice \(reason: stuck since deploy\): released/);

    // "At once": well inside the 30 s lease the reap cut short (room left for a loaded machine).
    const [, waiterToken] = await withDeadline(waiterGot, 10_000, 'waiter acquiring after the reap');
    expect(Number(waiterToken)).toBeGreaterThan(Number(holderToken));
    const [, reason] = await withDeadline(holderLost, 10_000, 'evicted holder noticing');
    expect(reason).toBe('taken-over');

    const after = recordingIo();
    expect(await runCli(['inspect', 'job:stuck', '--json', '--redis', redis.url, '--key-prefix', keyPrefix], after)).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject([{ key: 'job:stuck', holders: [{ ownerId: 'next-worker', pid: waiter.pid }] }]);
  });

  it('reap on a terminal shows the holder, asks, and reaps only what the operator saw', async () => {
    const { keyPrefix, reports: holder } = shared;
    const args = ['reap', 'nightly', '--reason', 'manual', '--redis', redis.url, '--key-prefix', keyPrefix];

    const declined = recordingIo({ interactive: true, answer: false });
    expect(await runCli(args, declined)).toBe(3);
    expect(declined.stderr).toContain(String(holder.pid));
    expect(declined.stderr).toContain('Not reaped.');
    expect(declined.questions).toEqual(['Reap "nightly"? Its holder loses the lock at its next heartbeat. [y/N] ']);

    const accepted = recordingIo({ interactive: true, answer: true });
    expect(await runCli(args, accepted)).toBe(0);
    expect(accepted.stdout).toMatch(new RegExp(`^Reaped "nightly": it was held by report-worker \\(pid ${holder.pid} on .*, fencing token \\d+\\)\\.\\n$`));

    const again = recordingIo({ interactive: true, answer: true });
    expect(await runCli(args, again)).toBe(3);
    expect(again.stdout).toBe('"nightly" is not held; nothing reaped.\n');
    expect(again.questions).toEqual([]);
  });

  it('lock sets: two processes taking overlapping sets in opposite orders never deadlock and never overlap', async () => {
    const keyPrefix = uniquePrefix('redis');
    const overlapLog = join(scratch, `${keyPrefix.replace(/:$/, '')}.log`);
    const go = join(scratch, `${keyPrefix.replace(/:$/, '')}.go`);
    const rounds = 25;
    const base = { store: { redis: redis.url }, keyPrefix, ttlMs: 5_000 };
    const sets = [
      { name: 'forward', keys: ['set:a', 'set:shared-1', 'set:shared-2'] },
      { name: 'backward', keys: ['set:shared-2', 'set:shared-1', 'set:b'] },
    ];
    const workers = sets.map(({ name, keys }) =>
      startWorker({ ...base, ownerId: name, task: { kind: 'sets', keys, rounds, overlapLog, name, fencedBy: 'set:shared-1', go } }),
    );
    // Both finished starting before either takes a set: they contend from the first round.
    await Promise.all(workers.map((worker) => waitForLine(worker, /^set-ready$/)));
    writeFileSync(go, '');
    const done = await Promise.all(workers.map((worker) => waitForLine(worker, /^done (\d+) (\d+)$/)));
    expect(done.map(([, finished, skipped]) => [Number(finished), Number(skipped)])).toEqual([
      [rounds, 0],
      [rounds, 0],
    ]);
    const report = checkOverlaps(overlapLog);
    process.stdout.write(`[redis] two processes, overlapping sets in opposite orders: ${JSON.stringify(report)}\n`);
    expect(report).toMatchObject({ entries: 2 * rounds, overlaps: 0, fencingViolations: 0, perHolder: { forward: rounds, backward: rounds } });
    // Their sets really met: the shared keys changed hands between them more than once.
    expect({ handovers: report.handovers, alternated: alternated(report) }).toEqual({ handovers: report.handovers, alternated: true });
  }, PROCESS_TEST_TIMEOUT_MS);

  it('tryAcquireMany with partial takes what is free and names the holder of the rest', async () => {
    const { keyPrefix, billing: holder } = shared;
    const options = resolveLockOptions({ backend: 'redis', redis: { url: redis.url }, keyPrefix, ownerId: 'partial-taker' });
    const backend = await createLockBackend({ options, moduleRef: {} as ModuleRef });
    const locks = new SpaceLockService(options, backend);
    try {
      const all = await locks.tryAcquireMany(['p:3', 'p:2', 'p:1']);
      expect(all.acquired).toEqual([]);
      expect(all.unavailable.map(({ key, reason }) => ({ key, reason }))).toEqual([{ key: 'p:2', reason: 'lock-held' }]);
      expect(await locks.inspect('p:1')).toBeNull();

      const some = await locks.tryAcquireMany(['p:3', 'p:2', 'p:1'], { partial: true });
      expect(some.acquired.map((lock) => lock.key)).toEqual(['p:1', 'p:3']);
      expect(some.unavailable).toHaveLength(1);
      expect(some.unavailable[0]).toMatchObject({
        key: 'p:2',
        reason: 'lock-held',
        holder: { key: 'p:2', ownerId: 'billing-worker', pid: holder.pid, local: false },
      });
      expect(locks.held().map(({ key, ownerId, fencingToken }) => ({ key, ownerId, fencingToken }))).toEqual(
        some.acquired.map(({ key, fencingToken }) => ({ key, ownerId: 'partial-taker', fencingToken })),
      );
      expect(await locks.inspect('p:1')).toMatchObject({ ownerId: 'partial-taker', pid: process.pid, local: true });
      await locks.releaseAll(some.acquired);
      expect(locks.held()).toEqual([]);
    } finally {
      await locks.beforeApplicationShutdown();
    }
  });
});

function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return settleWithin(work, ms, () => new Error(`${what} took over ${ms} ms`));
}
