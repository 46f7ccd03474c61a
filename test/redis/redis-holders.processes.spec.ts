import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ChildProcess } from 'node:child_process';
import { LockLimitMismatchError } from '../../lib';
import { checkHolders } from '../support/overlap-checker';
import { exited, killAll, spawnTs, waitForLine, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

const WORKER = join(__dirname, 'fixtures', 'holders-worker.ts');

describe('Redis shared locks and permits across processes', () => {
  let server: RedisServer;
  let dir: string;
  const children: ChildProcess[] = [];
  const apps: LockApp[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    dir = mkdtempSync(join(tmpdir(), 'nestjs-lock-redis-holders-'));
  });

  afterEach(async () => {
    await killAll(children.splice(0));
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
  });

  afterAll(async () => {
    await server.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  function start(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawnTs(WORKER, args, { REDIS_URL: server.url, ...env });
    children.push(child);
    return child;
  }

  /** Start `workers` (each an env), wait until all are ready, let them go together, wait until done. */
  async function runTogether(name: string, workers: NodeJS.ProcessEnv[]): Promise<string> {
    const log = join(dir, `${name}.log`);
    const go = join(dir, `${name}.go`);
    const started = workers.map((env) => start(['loop'], { LOG: log, GO: go, ...env }));
    await Promise.all(started.map((worker) => waitForLine(worker, /^ready$/)));
    writeFileSync(go, '');
    await Promise.all(started.map((worker) => waitForLine(worker, /^done$/)));
    expect(await Promise.all(started.map(exited))).toEqual(started.map(() => 0));
    return log;
  }

  async function replica(prefix: string, ttlMs = 5_000): Promise<LockApp> {
    const app = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix, ttlMs });
    apps.push(app);
    return app;
  }

  it('readers of two processes overlap; writers of a third never overlap anyone; fencing tokens follow the grants', async () => {
    const prefix = uniquePrefix('rw');
    const base = { KEY_PREFIX: prefix, KEY: 'scan', HOLD_MS: '5' };
    const log = await runTogether('rw', [
      { ...base, NAME: 'ra', MODE: 'shared', CONCURRENCY: '3', COUNT: '30' },
      { ...base, NAME: 'rb', MODE: 'shared', CONCURRENCY: '3', COUNT: '30' },
      { ...base, NAME: 'w', MODE: 'exclusive', CONCURRENCY: '2', COUNT: '20' },
    ]);
    const report = checkHolders(log);
    expect(report.perKind).toEqual({ shared: 180, exclusive: 40 });
    expect(report.writerOverlaps).toBe(0);
    expect(report.fencingViolations).toBe(0);
    expect(report.maxReaders).toBeGreaterThanOrEqual(2);
    process.stdout.write(`[redis] shared: ${report.entries} holds, up to ${report.maxReaders} readers together, 0 writer overlaps\n`);
  });

  it('limit 3: four processes never hold more than 3 permits at once', async () => {
    const prefix = uniquePrefix('permits');
    const base = { KEY_PREFIX: prefix, KEY: 'export', LIMIT: '3', CONCURRENCY: '2', COUNT: '25', HOLD_MS: '5' };
    const log = await runTogether('permits', ['p0', 'p1', 'p2', 'p3'].map((NAME) => ({ ...base, NAME })));
    const report = checkHolders(log);
    expect(report.perKind).toEqual({ permit: 200 });
    expect(report.maxInside).toBeLessThanOrEqual(3);
    expect(report.maxInside).toBeGreaterThanOrEqual(2);
    expect(report.fencingViolations).toBe(0);
    process.stdout.write(`[redis] permits: ${report.entries} holds, at most ${report.maxInside} of 3 at once\n`);
  });

  it('a SIGKILLed permit holder frees its permit when its TTL runs out, not before', async () => {
    const prefix = uniquePrefix('permit-kill');
    const holder = start(['hold'], { KEY_PREFIX: prefix, KEY: 'export', NAME: 'holder', LIMIT: '2', TTL_MS: '1500' });
    const killedToken = Number((await waitForLine(holder, /^held (\d+)$/))[1]);
    const { locks } = await replica(prefix, 1_500);
    const mine = await locks.acquire('export', { limit: 2 });
    expect(await locks.tryAcquire('export', { limit: 2 })).toBeNull();

    await killAll([holder], 'SIGKILL');
    const askedAt = performance.now();
    const killed = (await locks.inspectAll('export')).find((record) => record.fencingToken === killedToken);
    const remaining = killed?.expiresInMs ?? 0;
    expect(remaining).toBeGreaterThan(100);
    const permit = await locks.acquire('export', { limit: 2, waitMs: 5_000 });
    const waited = performance.now() - askedAt;
    // Not before the dead holder's lease ran out in Redis (whole ms), and not long after.
    expect(waited).toBeGreaterThanOrEqual(remaining - 1);
    expect(waited).toBeLessThan(remaining + 2_000);
    expect(permit.fencingToken).toBeGreaterThan(killedToken);
    await Promise.all([permit.release(), mine.release()]);
  });

  it('a steady stream of readers from two processes does not keep a waiting writer out past its waitMs', async () => {
    const prefix = uniquePrefix('starve');
    const stop = join(dir, 'starve.stop');
    const go = join(dir, 'starve.go');
    const log = join(dir, 'starve.log');
    // Three callers per process, each holding 50 ms and asking again at once: the lock is never without a reader.
    const base = { KEY_PREFIX: prefix, KEY: 'scan', MODE: 'shared', CONCURRENCY: '3', HOLD_MS: '50', STOP: stop, LOG: log, GO: go };
    const readers = [start(['loop'], { ...base, NAME: 'ra' }), start(['loop'], { ...base, NAME: 'rb' })];
    await Promise.all(readers.map((reader) => waitForLine(reader, /^ready$/)));
    const { locks } = await replica(prefix);
    writeFileSync(go, '');
    await until(() => existsSync(log) && checkHolders(log).maxReaders >= 2, 20_000, 'readers overlapping');

    const askedAt = performance.now();
    const writer = await locks.acquire('scan', { waitMs: 3_000 });
    const waited = performance.now() - askedAt;
    const during = checkHolders(log);
    await writer.release();
    writeFileSync(stop, '');
    await Promise.all(readers.map((reader) => waitForLine(reader, /^done$/)));
    expect(waited).toBeLessThan(3_000);
    expect(during.writerOverlaps).toBe(0);
    process.stdout.write(`[redis] a writer behind a stream of readers got in after ${Math.round(waited)} ms\n`);
  });

  it('a limit other than the one another process holds the key with is a LockLimitMismatchError, at once', async () => {
    const prefix = uniquePrefix('mismatch');
    const holder = start(['hold'], { KEY_PREFIX: prefix, KEY: 'export', NAME: 'holder', LIMIT: '3' });
    await waitForLine(holder, /^held \d+$/);
    const { locks } = await replica(prefix);
    const askedAt = performance.now();
    await expect(locks.acquire('export', { limit: 5, waitMs: 5_000 })).rejects.toMatchObject({ limitInUse: 3, requestedLimit: 5 });
    await expect(locks.acquire('export', { waitMs: 5_000 })).rejects.toBeInstanceOf(LockLimitMismatchError);
    expect(performance.now() - askedAt).toBeLessThan(2_500);
    const permit = await locks.acquire('export', { limit: 3 });
    await permit.release();
  });

  it('force release of one permit by its fencing token: that holder is told, the others keep theirs', async () => {
    const prefix = uniquePrefix('reap-one');
    const env = { KEY_PREFIX: prefix, KEY: 'export', LIMIT: '3' };
    const holders = [start(['hold'], { ...env, NAME: 'a' }), start(['hold'], { ...env, NAME: 'b' })];
    const [first, second] = await Promise.all(holders.map(async (holder) => Number((await waitForLine(holder, /^held (\d+)$/))[1])));
    const { locks } = await replica(prefix);
    const lost = waitForLine(holders[1], /^lost (\S+)$/);
    expect(await locks.forceRelease('export', { reason: 'test', expectFencingToken: second })).toMatchObject({ outcome: 'released' });
    expect((await lost)[1]).toBe('LockLostError');
    expect((await locks.inspectAll('export')).map((record) => record.fencingToken)).toEqual([first]);
    expect(holders[0].exitCode).toBeNull();
  });
});
