import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { checkOverlaps } from '../support/overlap-checker';
import { exited, killAll, spawnTs, waitForLine } from '../support/processes';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

const WORKER = join(__dirname, 'fixtures', 'lock-worker.ts');
const HTTP_APP = join(__dirname, 'fixtures', 'http-app.ts');

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
    await Promise.all(workers.map((worker) => waitForLine(worker, /^ready$/, 30_000)));
    writeFileSync(go, '');
    const started = performance.now();
    await Promise.all(workers.map((worker) => waitForLine(worker, /^done$/, 60_000)));
    const elapsed = performance.now() - started;
    expect(await Promise.all(workers.map(exited))).toEqual([0, 0, 0, 0]);

    const report = checkOverlaps(log);
    expect(report.entries).toBe(800);
    expect(report.overlaps).toBe(0);
    expect(report.fencingViolations).toBe(0);
    expect(Object.values(report.perHolder)).toEqual([200, 200, 200, 200]);
    expect(await raw.exists(lockKeys(`${prefix}shared`).lease)).toBe(0);
    process.stdout.write(`[redis] 800 cross-process acquisitions in ${Math.round(elapsed)} ms\n`);
  }, 90_000);

  it('two app processes on one Redis: concurrent requests to one @WithLock route give exactly one 200', async () => {
    const prefix = uniquePrefix('http');
    const releaseFile = join(dir, 'http.release');
    const env = { KEY_PREFIX: prefix, RELEASE_FILE: releaseFile };
    const replicas = [start(HTTP_APP, [], env), start(HTTP_APP, [], env)];
    const ports = await Promise.all(replicas.map(async (replica) => Number((await waitForLine(replica, /^listening (\d+)$/, 30_000))[1])));
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
  }, 60_000);

  it('a SIGKILLed holder keeps the lock until its TTL runs out; the next holder gets a higher fencing token', async () => {
    const prefix = uniquePrefix('sigkill');
    const holder = start(WORKER, ['hold'], { KEY_PREFIX: prefix, KEY: 'job', NAME: 'holder', TTL_MS: '1000' });
    const heldToken = Number((await waitForLine(holder, /^held (\d+)$/, 30_000))[1]);
    const replica = await lockApp({ backend: 'redis', redis: { url: server.url }, keyPrefix: prefix, ttlMs: 1_000 });
    apps.push(replica);

    await killAll([holder], 'SIGKILL');
    const pttl = await raw.pttl(lockKeys(`${prefix}job`).lease);
    const pttlReadAt = performance.now();
    expect(pttl).toBeGreaterThan(100);
    expect(await replica.locks.tryAcquire('job')).toBeNull();

    const lock = await replica.locks.acquire('job', { waitMs: 5_000 });
    const waited = performance.now() - pttlReadAt;
    // Not before the dead holder's lease ran out (Redis' clock, a few ms of slack for our timer)...
    expect(waited).toBeGreaterThanOrEqual(pttl - 15);
    // ...and not much after: the waiter sized its wait by the holder's PTTL.
    expect(waited).toBeLessThan(pttl + 500);
    expect(lock.fencingToken).toBeGreaterThan(heldToken);
    await lock.release();
  }, 60_000);
});
