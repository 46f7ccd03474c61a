import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { parseHolderRecord } from '../../lib/backends/redis/redis-holder-record';
import { alternated, checkOverlaps } from '../support/overlap-checker';
import { exited, killAll, spawnTs, waitForLine, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

const WORKER = join(__dirname, 'fixtures', 'lock-worker.ts');
const HTTP_APP = join(__dirname, 'fixtures', 'http-app.ts');
const SHUTDOWN_APP = join(__dirname, 'fixtures', 'shutdown-app.ts');

describe('Redis backend across processes', () => {
  let server: RedisServer;
  let raw: Redis;
  let dir: string;
  const children: ChildProcess[] = [];
  const apps: LockApp[] = [];

  beforeAll(async () => {
    server = await RedisServer.start();
    raw = new Redis(server.url);
    dir = mkdtempSync(join(tmpdir(), 'nestjs-lock-redis-procs-'));
  });

  afterEach(async () => {
    await killAll(children.splice(0));
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
  });

  afterAll(async () => {
    raw.disconnect();
    await server.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  function start(file: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
    const child = spawnTs(file, args, { REDIS_URL: server.url, ...env });
    children.push(child);
    return child;
  }

  it('4 processes x 200 acquisitions never overlap, fencing tokens strictly increase', async () => {
    const prefix = uniquePrefix('mutex');
    const log = join(dir, 'mutex.log');
    const go = join(dir, 'mutex.go');
    const workers = [0, 1, 2, 3].map((index) =>
      start(WORKER, ['loop'], { KEY_PREFIX: prefix, KEY: 'shared', NAME: `w${index}`, LOG: log, COUNT: '200', GO: go }),
    );
    await Promise.all(workers.map((worker) => waitForLine(worker, /^ready$/)));
    writeFileSync(go, '');
    const started = performance.now();
    await Promise.all(workers.map((worker) => waitForLine(worker, /^done$/)));
    const elapsed = performance.now() - started;
    expect(await Promise.all(workers.map(exited))).toEqual([0, 0, 0, 0]);

    const report = checkOverlaps(log);
    expect(report.entries).toBe(800);
    expect(report.overlaps).toBe(0);
    expect(report.fencingViolations).toBe(0);
    expect(Object.values(report.perHolder)).toEqual([200, 200, 200, 200]);
    expect({ handovers: report.handovers, alternated: alternated(report) }).toEqual({ handovers: report.handovers, alternated: true });
    expect(await raw.exists(lockKeys(`${prefix}shared`).lease)).toBe(0);
    process.stdout.write(`[redis] 800 cross-process acquisitions in ${Math.round(elapsed)} ms, ${report.handovers} handovers between processes\n`);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('two app processes on one Redis: concurrent requests to one @WithLock route give exactly one 200', async () => {
    const prefix = uniquePrefix('http');
    const releaseFile = join(dir, 'http.release');
    const env = { KEY_PREFIX: prefix, RELEASE_FILE: releaseFile };
    const replicas = [start(HTTP_APP, [], env), start(HTTP_APP, [], env)];
    const ports = await Promise.all(replicas.map(async (replica) => Number((await waitForLine(replica, /^listening (\d+)$/))[1])));
    expect(ports[0]).not.toBe(ports[1]);
    let answered = 0;
    const pending = [0, 1, 2, 3, 4, 5].map((index) =>
      fetch(`http://127.0.0.1:${ports[index % 2]}/job`, { method: 'POST' }).then((response) => {
        answered += 1;
        return response;
      }),
    );
    // The winner's handler holds the lock until we let it go: every other request is answered first.
    await until(() => answered === 5, 20_000, 'five requests answered');
    writeFileSync(releaseFile, '');
    const responses = await Promise.all(pending);
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([200, 503, 503, 503, 503, 503]);
    for (const response of responses.filter((response) => response.status === 503)) {
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    const winner = responses.find((response) => response.status === 200);
    const body = (await winner?.json()) as { fencingToken: number };
    expect(body.fencingToken).toBeGreaterThanOrEqual(1);
  }, PROCESS_TEST_TIMEOUT_MS);

  it('SIGTERM with enableShutdownHooks: held leases are released through Redis before it closes; requests meanwhile get 503', async () => {
    const prefix = uniquePrefix('sigterm');
    const drainFile = join(dir, `${prefix.replace(/:$/, '')}.drain`);
    const replica = start(SHUTDOWN_APP, [], { KEY_PREFIX: prefix, DRAIN_FILE: drainFile });
    const port = Number((await waitForLine(replica, /^listening (\d+)$/))[1]);
    const url = (path: string): string => `http://127.0.0.1:${port}${path}`;
    const leaseKeys = lockKeys(`${prefix}job:held`);

    const holding = fetch(url('/hold'), { method: 'POST' });
    const token = Number((await waitForLine(replica, /^holding (\d+)$/))[1]);
    expect(parseHolderRecord(await raw.get(leaseKeys.holder))?.fencingToken).toBe(token);
    // A 30 s lease: gone within this test only if it was released.
    expect(await raw.pttl(leaseKeys.lease)).toBeGreaterThan(20_000);

    const aborted = waitForLine(replica, /^aborted (\S+)$/);
    const draining = waitForLine(replica, /^draining (\S+)$/);
    replica.kill('SIGTERM');
    expect((await draining)[1]).toBe('SIGTERM');
    expect((await aborted)[1]).toBe('shutdown');
    expect(await raw.exists(leaseKeys.lease, leaseKeys.holder)).toBe(0);
    expect((await holding).status).toBe(200);

    // Still serving (the app drains), but no new locks: 503 without Retry-After.
    const during = await fetch(url('/other'), { method: 'POST' });
    expect(during.status).toBe(503);
    expect(during.headers.get('retry-after')).toBeNull();
    expect(((await during.json()) as { message: string }).message).toMatch(/Shutting down/);
    expect(await raw.exists(lockKeys(`${prefix}job:other`).lease)).toBe(0);

    writeFileSync(drainFile, '');
    await exited(replica);
    // Nest re-raises the signal once its hooks are done.
    expect(replica.signalCode).toBe('SIGTERM');
  });

  it('a SIGKILLed holder keeps the lock until its TTL runs out; the next holder gets a higher fencing token', async () => {
    const prefix = uniquePrefix('sigkill');
    const holder = start(WORKER, ['hold'], { KEY_PREFIX: prefix, KEY: 'job', NAME: 'holder', TTL_MS: '1000' });
    const heldToken = Number((await waitForLine(holder, /^held (\d+)$/))[1]);
    const replica = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix, ttlMs: 1_000 });
    apps.push(replica);

    await killAll([holder], 'SIGKILL');
    // Counted from before the PTTL was asked: Redis expires the lease no earlier than this.
    const pttlSentAt = performance.now();
    const pttl = await raw.pttl(lockKeys(`${prefix}job`).lease);
    expect(pttl).toBeGreaterThan(100);
    expect(await replica.locks.tryAcquire('job')).toBeNull();

    const lock = await replica.locks.acquire('job', { waitMs: 5_000 });
    const waited = performance.now() - pttlSentAt;
    // Not before the dead holder's lease ran out in Redis (PTTL is in whole ms: no other slack)...
    expect(waited).toBeGreaterThanOrEqual(pttl - 1);
    // ...and not long after: the waiter sized its wait by the holder's PTTL (room for a busy machine).
    expect(waited).toBeLessThan(pttl + 2_000);
    expect(lock.fencingToken).toBeGreaterThan(heldToken);
    await lock.release();
  }, PROCESS_TEST_TIMEOUT_MS);
});
