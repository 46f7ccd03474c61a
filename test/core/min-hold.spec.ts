import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LockOptionsError, MemoryLockStore, WithLock, type LockModuleOptions } from '../../lib';
import { lockApp, uniquePrefix, type LockApp } from '../redis/redis-test-app';

/** Two "replicas" of one backend: A takes the lock, B looks at it from outside. */
const backends: [string, () => { options: LockModuleOptions; cleanup?: () => void }][] = [
  ['memory', () => ({ options: { backend: 'memory', memory: { store: new MemoryLockStore() } } })],
  ['redis', () => ({ options: { backend: 'redis', redis: { url: 'redis://127.0.0.1:6379' }, keyPrefix: uniquePrefix('min-hold') } })],
  [
    'file',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'min-hold-'));
      return { options: { backend: 'file', file: { dir } }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
    },
  ],
];

describe.each(backends)('minHoldMs on the %s backend', (_name, setup) => {
  let a: LockApp;
  let b: LockApp;
  let cleanup: (() => void) | undefined;

  beforeEach(async () => {
    const made = setup();
    cleanup = made.cleanup;
    a = await lockApp({ ...made.options, ttlMs: 3_000 });
    b = await lockApp({ ...made.options, ttlMs: 3_000 });
  });

  afterEach(async () => {
    await a.app.close();
    await b.app.close();
    cleanup?.();
  });

  it('answers at once, keeps the lease until minHoldMs after the grant, then frees it', async () => {
    const started = performance.now();
    const result = await a.locks.withSpaceLock('job', () => 'done', { minHoldMs: 600 });
    expect(result).toBe('done');
    // The caller has its result while the lease is still taken, by A, with no heartbeat behind it.
    expect(await b.locks.tryAcquire('job')).toBeNull();
    expect(await a.locks.tryAcquire('job')).toBeNull();
    const [holder] = await b.locks.inspectAll('job');
    expect(holder.instanceId).toBe(a.locks.instanceId);
    if (holder.expiresInMs !== null) expect(holder.expiresInMs).toBeLessThanOrEqual(600);
    const next = await b.locks.acquire('job', { waitMs: 5_000 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(600);
    expect(next.fencingToken).toBeGreaterThan(holder.fencingToken);
    await next.release();
  });

  it('releases at once when the work outlasted the minimum hold', async () => {
    await a.locks.withSpaceLock('slow', () => new Promise((resolve) => setTimeout(resolve, 50)), { minHoldMs: 10 });
    expect(await b.locks.inspect('slow')).toBeNull();
  });

  it('leaves a lease inside its minimum hold to run out at shutdown instead of deleting it', async () => {
    await a.locks.withSpaceLock('deploy', () => 'fast', { minHoldMs: 800 });
    await a.app.close();
    a = await lockApp({ backend: 'memory' }); // closed again in afterEach
    if (_name === 'file') {
      // A kernel lock cannot outlive its holder: the file backend frees it with the module.
      expect(await b.locks.inspect('deploy')).toBeNull();
      return;
    }
    const holder = await b.locks.inspect('deploy');
    expect(holder).not.toBeNull();
    expect(holder?.expiresInMs).toBeLessThanOrEqual(800);
    expect(await b.locks.tryAcquire('deploy')).toBeNull();
    await (await b.locks.acquire('deploy', { waitMs: 5_000 })).release();
  });
});

describe('minHoldMs validation', () => {
  it('rejects a negative or fractional minHoldMs with a typed error', async () => {
    const { app, locks } = await lockApp({ backend: 'memory' });
    await expect(locks.withSpaceLock('x', () => 1, { minHoldMs: -1 })).rejects.toBeInstanceOf(LockOptionsError);
    await expect(locks.tryAcquire('x', { minHoldMs: 1.5 })).rejects.toBeInstanceOf(LockOptionsError);
    expect(() => WithLock('x', { minHoldMs: -5 })).toThrow(LockOptionsError);
    await app.close();
  });
});
