import { performance } from 'node:perf_hooks';
import { LockBackendError, LockOptionsError } from '../../lib';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { replicaOptions } from '../../lib/backends/redis/replica-confirmation';
import { RedisServer, until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from './redis-test-app';

describe('redis.replicas: grants, hand-offs and releases confirmed by a real replica with WAIT', () => {
  let primary: RedisServer;
  let replica: RedisServer;
  const apps: LockApp[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    primary = await RedisServer.start();
    replica = await RedisServer.start(['--replicaof', '127.0.0.1', String(primary.port)]);
  });
  beforeEach(() => until(async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'), 10_000, 'replica in sync'));
  afterEach(async () => {
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
    expect(unhandled).toEqual([]);
  });
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await replica.destroy();
    await primary.destroy();
  });

  async function app(prefix: string, ttlMs = 2_000): Promise<LockApp> {
    const created = await lockApp({ backend: 'redis', redis: { url: primary.url, replicas: { min: 1, timeoutMs: 300 } }, keyPrefix: prefix, ttlMs });
    apps.push(created);
    return created;
  }
  const onReplica = (prefix: string, key: string): Promise<string> => replica.cli('get', lockKeys(prefix + key).lease);

  it('validates the option: positive whole min and timeoutMs, nothing else', async () => {
    expect(replicaOptions(undefined)).toBeUndefined();
    expect(replicaOptions({ min: 2, timeoutMs: 50 })).toEqual({ min: 2, timeoutMs: 50 });
    for (const bad of [null, 'one', { min: 0, timeoutMs: 50 }, { min: 1 }, { min: 1, timeoutMs: 0 }, { min: 1.5, timeoutMs: 5 }, { min: 1, timeoutMs: 5, wait: true }]) {
      expect(() => replicaOptions(bad)).toThrow(LockOptionsError);
    }
    await expect(
      lockApp({ backend: 'redis', redis: { url: primary.url, replicas: { min: 1, timeoutMs: -5 } }, keyPrefix: uniquePrefix('bad') }),
    ).rejects.toThrow(/redis\.replicas\.timeoutMs must be a positive integer/);
  });

  it('a grant, a local hand-off, a cross-process hand-off and a release are on the replica when the call returns', async () => {
    const prefix = uniquePrefix('confirmed');
    const one = await app(prefix);
    const two = await app(prefix);
    const first = await one.locks.acquire('job');
    expect(await onReplica(prefix, 'job')).toBe(first.token);

    const local = one.locks.acquire('job', { waitMs: 5_000 });
    await first.release();
    const handed = await local;
    expect(await onReplica(prefix, 'job')).toBe(handed.token);

    const remote = two.locks.acquire('job', { waitMs: 5_000 });
    await until(async () => (await primary.cli('llen', lockKeys(`${prefix}job`).queue)) === '1', 5_000, 'remote waiter queued');
    await handed.release();
    const passed = await remote;
    expect(passed.fencingToken).toBeGreaterThan(handed.fencingToken);
    expect(await onReplica(prefix, 'job')).toBe(passed.token);

    await passed.release();
    expect(await onReplica(prefix, 'job')).toBe('');
  });

  it('readers and permits: grants, a permit passed to a waiter of another replica and releases are on the replica when the call returns', async () => {
    const prefix = uniquePrefix('confirmed-holders');
    const one = await app(prefix);
    const two = await app(prefix);
    const onReplicaHolders = async (key: string): Promise<number> => Number(await replica.cli('zcard', lockKeys(prefix + key).expiries));
    const readers = await Promise.all([one.locks.acquire('scan', { mode: 'shared' }), two.locks.acquire('scan', { mode: 'shared' })]);
    expect(await onReplicaHolders('scan')).toBe(2);
    await Promise.all(readers.map((reader) => reader.release()));
    expect(await onReplicaHolders('scan')).toBe(0);

    const permit = await one.locks.acquire('export', { limit: 2 });
    const other = await one.locks.acquire('export', { limit: 2 });
    const waiting = two.locks.acquire('export', { limit: 2, waitMs: 5_000 });
    await until(async () => (await primary.cli('llen', lockKeys(`${prefix}export`).queue)) === '1', 5_000, 'permit waiter queued');
    await permit.release();
    const passed = await waiting;
    expect(passed.fencingToken).toBeGreaterThan(other.fencingToken);
    expect(await replica.cli('zscore', lockKeys(`${prefix}export`).expiries, passed.token)).not.toBe('');
    await Promise.all([passed.release(), other.release()]);
    expect(await onReplicaHolders('export')).toBe(0);
  });

  it('replica stopped: the grant is given back and the call fails with LockBackendError; held leases keep their heartbeats', async () => {
    const prefix = uniquePrefix('no-replica');
    const { locks } = await app(prefix, 600);
    const kept = await locks.acquire('kept');
    await replica.stop();
    try {
      await expect(locks.acquire('job')).rejects.toThrow(LockBackendError);
      await expect(locks.acquire('job')).rejects.toThrow(/reached 0 of 1 replica\(s\) within 300 ms/);
      expect(await primary.cli('exists', lockKeys(`${prefix}job`).lease)).toBe('0');
      expect(await locks.inspect('job')).toBeNull();
      // Heartbeats do not wait for replicas: the lease outlives three TTLs in Redis.
      const stoppedAt = performance.now();
      await until(() => performance.now() - stoppedAt > 3 * 600, 5_000, 'three TTLs');
      expect(await primary.cli('get', lockKeys(`${prefix}kept`).lease)).toBe(kept.token);
      expect(() => kept.ensureHeld()).not.toThrow();
      expect(kept.signal.aborted).toBe(false);
      await expect(kept.release()).rejects.toThrow(LockBackendError);
      expect(await primary.cli('exists', lockKeys(`${prefix}kept`).lease)).toBe('0');
    } finally {
      await replica.restart();
    }
  });
});
