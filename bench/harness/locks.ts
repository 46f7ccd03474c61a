import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ModuleRef } from '@nestjs/core';
import Redis from 'ioredis';
import { createLockBackend } from '../../lib/backends/lock-backend.factory';
import type { LockModuleOptions } from '../../lib/lock-module-options.interface';
import { resolveLockOptions } from '../../lib/lock-options.validation';
import { SpaceLockService } from '../../lib/space-lock.service';
import { sleep } from './measure';

/**
 * Every lock implementation the scenarios compare, behind one tiny interface, so a scenario
 * or a worker process names a kind and never knows how each library spells acquire/release.
 */
export type LockKind = 'floor' | 'redlock' | 'redis-semaphore' | 'proper-lockfile' | 'ours-redis' | 'ours-memory' | 'ours-file';

export interface LockContext {
  redisUrl?: string;
  fileDir?: string;
  /** Lease length for every implementation (ms). */
  ttlMs: number;
  /** Extra module options for our library (heartbeatMs, ...). */
  ours?: Partial<LockModuleOptions>;
}

export interface Held {
  release(): Promise<unknown>;
}

export interface LockClient {
  readonly kind: LockKind;
  /** Take `key`; `waitMs` 0 means one attempt. Resolves `null` when the lock stayed taken. */
  acquire(key: string, waitMs: number): Promise<Held | null>;
  close(): Promise<void>;
}

export const LABELS: Record<LockKind, string> = {
  floor: 'raw ioredis SET NX PX + EVALSHA del',
  redlock: 'redlock 5.0.0-beta.2',
  'redis-semaphore': 'redis-semaphore Mutex',
  'proper-lockfile': 'proper-lockfile',
  'ours-redis': 'nestjs-lock (redis)',
  'ours-memory': 'nestjs-lock (memory)',
  'ours-file': 'nestjs-lock (file)',
};

/** Commands this process sent to Redis through the bench's clients (round trips, pipelining aside). */
export const sent = { commands: 0 };

/**
 * An ioredis client that counts every command it sends. Every implementation gets its
 * connection from here (ours through `redis.client`), so "commands sent per op" compares
 * like with like; INFO commandstats also counts the commands run inside Lua scripts.
 */
export function countingRedis(url: string): Redis {
  const redis = new Redis(url);
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
    sent.commands += 1;
    return send(...args);
  }) as Redis['sendCommand'];
  return redis;
}

/** The floor's release: compare-and-delete of one key. */
export const COMPARE_AND_DELETE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

type FloorRedis = Redis & { compareAndDelete(key: string, token: string): Promise<number> };

/** The two-round-trip floor: what any correct Redis lease needs at least. */
class FloorClient implements LockClient {
  readonly kind = 'floor' as const;
  private readonly redis: FloorRedis;

  constructor(url: string) {
    const redis = countingRedis(url);
    redis.defineCommand('compareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE });
    this.redis = redis as FloorRedis;
  }

  async acquire(key: string, waitMs: number): Promise<Held | null> {
    const token = randomBytes(16).toString('hex');
    const giveUpAt = Date.now() + waitMs;
    for (;;) {
      if ((await this.redis.set(key, token, 'PX', 30_000, 'NX')) === 'OK') {
        return { release: () => this.redis.compareAndDelete(key, token) };
      }
      if (Date.now() >= giveUpAt) return null;
      await sleep(5);
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

class RedlockClient implements LockClient {
  readonly kind = 'redlock' as const;
  private constructor(
    private readonly redis: Redis,
    private readonly redlock: import('redlock').default,
    private readonly ttlMs: number,
  ) {}

  static async create(url: string, ttlMs: number): Promise<RedlockClient> {
    const { default: Redlock } = await import('redlock');
    const redis = countingRedis(url);
    // Defaults (retryCount 10, retryDelay 200 ms, jitter 200 ms), as users get them.
    return new RedlockClient(redis, new Redlock([redis]), ttlMs);
  }

  async acquire(key: string, waitMs: number): Promise<Held | null> {
    const giveUpAt = Date.now() + waitMs;
    for (;;) {
      try {
        return await this.redlock.acquire([key], this.ttlMs, waitMs === 0 ? { retryCount: 0 } : undefined);
      } catch (error) {
        if (Date.now() >= giveUpAt) return null;
      }
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

class SemaphoreClient implements LockClient {
  readonly kind = 'redis-semaphore' as const;
  private constructor(
    private readonly redis: Redis,
    private readonly Mutex: typeof import('redis-semaphore').Mutex,
    private readonly ttlMs: number,
  ) {}

  static async create(url: string, ttlMs: number): Promise<SemaphoreClient> {
    const { Mutex } = await import('redis-semaphore');
    return new SemaphoreClient(countingRedis(url), Mutex, ttlMs);
  }

  async acquire(key: string, waitMs: number): Promise<Held | null> {
    // Defaults (retryInterval 10 ms, refresh timer at 0.8 x lockTimeout) except the lease length.
    // (acquireTimeout is checked before the first attempt, so "one attempt" is an attempts limit.)
    const mutex = new this.Mutex(this.redis, key, {
      lockTimeout: this.ttlMs,
      ...(waitMs === 0 ? { acquireAttemptsLimit: 1 } : { acquireTimeout: waitMs }),
    });
    if (waitMs === 0) return (await mutex.tryAcquire()) ? mutex : null;
    try {
      await mutex.acquire();
      return mutex;
    } catch {
      return null;
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

/**
 * proper-lockfile with its defaults (stale 10 s, mtime update every 5 s) except retries,
 * which default to none: waiting callers retry every `PROPER_LOCKFILE_RETRY_MS`.
 */
export const PROPER_LOCKFILE_RETRY_MS = 5;

class ProperLockfileClient implements LockClient {
  readonly kind = 'proper-lockfile' as const;
  private constructor(
    private readonly lockfile: typeof import('proper-lockfile'),
    private readonly dir: string,
  ) {}

  static async create(dir: string): Promise<ProperLockfileClient> {
    mkdirSync(dir, { recursive: true });
    return new ProperLockfileClient(await import('proper-lockfile'), dir);
  }

  async acquire(key: string, waitMs: number): Promise<Held | null> {
    const file = join(this.dir, `${key.replace(/[^A-Za-z0-9_.-]/g, '_')}.pl`);
    const retries = Math.ceil(waitMs / PROPER_LOCKFILE_RETRY_MS);
    try {
      const release = await this.lockfile.lock(file, {
        realpath: false,
        retries: waitMs === 0 ? 0 : { retries, factor: 1, minTimeout: PROPER_LOCKFILE_RETRY_MS, maxTimeout: PROPER_LOCKFILE_RETRY_MS },
        onCompromised: () => undefined,
      });
      return { release };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ELOCKED') return null;
      throw error;
    }
  }

  async close(): Promise<void> {}
}

const STUB_MODULE_REF = {
  get: () => {
    throw new Error('no module ref in the bench');
  },
} as unknown as ModuleRef;

/** Our service outside Nest, exactly as the module builds it. */
export async function createService(options: LockModuleOptions): Promise<SpaceLockService> {
  const resolved = resolveLockOptions(options);
  const backend = await createLockBackend({ options: resolved, moduleRef: STUB_MODULE_REF });
  const service = new SpaceLockService(resolved, backend);
  await service.onApplicationBootstrap();
  return service;
}

export function oursOptions(kind: 'ours-redis' | 'ours-memory' | 'ours-file', context: LockContext): LockModuleOptions {
  const base: LockModuleOptions = { ttlMs: context.ttlMs, keyPrefix: 'bench:', ...context.ours };
  if (kind === 'ours-memory') return { ...base, backend: 'memory' };
  if (kind === 'ours-file') return { ...base, backend: 'file', file: { dir: context.fileDir } };
  // A scenario on a Cluster names it in `ours.redis.cluster`: the module connects itself.
  if (context.ours?.redis?.cluster) return { ...base, backend: 'redis' };
  return { ...base, backend: 'redis', redis: { ...context.ours?.redis, client: countingRedis(context.redisUrl ?? '') } };
}

class OursClient implements LockClient {
  private constructor(
    readonly kind: 'ours-redis' | 'ours-memory' | 'ours-file',
    readonly service: SpaceLockService,
    private readonly client: Redis | undefined,
  ) {}

  static async create(kind: 'ours-redis' | 'ours-memory' | 'ours-file', context: LockContext): Promise<OursClient> {
    const options = oursOptions(kind, context);
    const client = options.redis?.client as Redis | undefined;
    try {
      return new OursClient(kind, await createService(options), client);
    } catch (error) {
      client?.disconnect();
      throw error;
    }
  }

  acquire(key: string, waitMs: number): Promise<Held | null> {
    return this.service.tryAcquire(key, { waitMs });
  }

  async close(): Promise<void> {
    await this.service.beforeApplicationShutdown();
    // A client we passed in is never closed by the module.
    this.client?.disconnect();
  }
}

export async function createLockClient(kind: LockKind, context: LockContext): Promise<LockClient> {
  const url = context.redisUrl ?? '';
  switch (kind) {
    case 'floor':
      return new FloorClient(url);
    case 'redlock':
      return RedlockClient.create(url, context.ttlMs);
    case 'redis-semaphore':
      return SemaphoreClient.create(url, context.ttlMs);
    case 'proper-lockfile':
      return ProperLockfileClient.create(join(context.fileDir ?? '.', 'proper-lockfile'));
    default:
      return OursClient.create(kind, context);
  }
}

/** Is our backend of this kind available yet (the Redis and file backends land separately)? */
export async function available(kind: LockKind, context: LockContext): Promise<string | null> {
  if (!kind.startsWith('ours-')) return null;
  try {
    const client = await createLockClient(kind, context);
    await client.close();
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/** acquire + release once; throws when the (uncontended) lock was not granted. */
export async function cycleOnce(client: LockClient, key: string): Promise<void> {
  const held = await client.acquire(key, 0);
  if (!held) throw new Error(`${client.kind}: uncontended acquire of ${key} was refused`);
  await held.release();
}
