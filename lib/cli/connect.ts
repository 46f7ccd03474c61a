import type { ModuleRef } from '@nestjs/core';
import { stat } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import type { FileStaleRecord } from '../backends/file/file-backend-options.interface';
import { createLockBackend } from '../backends/lock-backend.factory';
import type { LockRecord } from '../lock-backend.interface';
import { LockOptionsError } from '../lock.errors';
import type { LockModuleOptions } from '../lock-module-options.interface';
import { resolveLockOptions } from '../lock-options.validation';
import { SpaceLockService } from '../space-lock.service';
import { describeStore, type CommonArgs, type StoreLocation } from './args';
import { errorMessage } from '../lock.errors';
import { CliError, ExitCode } from './exit-codes';
import { settleWithin } from '../settle-within';

export interface OpenStore {
  locks: SpaceLockService;
  /**
   * Records of dead holders the file backend removed while opening the directory (its start-up
   * sweep). The CLI shows them as stale instead of letting them vanish unseen.
   */
  swept: LockRecord[];
  /** Bounded: a store that stopped answering must not keep the CLI alive. */
  close(): Promise<void>;
}

/**
 * The CLI has no Nest container; only the Redis `namespace` option resolves anything through
 * DI, and the CLI never sets it, so a request here is a bug worth a clear message.
 */
const NO_MODULE_REF = {
  get(token: unknown): never {
    throw new LockOptionsError(`The nestjs-lock CLI has no Nest container to resolve ${String(token)}`);
  },
} as unknown as ModuleRef;

/** Builds the same backend and service an app would, from `--redis` / `--dir`. */
export async function openStore(args: CommonArgs, callerId: string): Promise<OpenStore> {
  const where = describeStore(args.store);
  const swept: LockRecord[] = [];
  const connection = await connectStore(args.store, args.timeoutMs, where, swept);
  const cleanups = [connection.close];
  const close = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) await bounded(cleanup(), args.timeoutMs, 'close').catch(() => undefined);
  };
  try {
    let options;
    try {
      options = resolveLockOptions({
        ...connection.options,
        keyPrefix: args.keyPrefix,
        backendTimeoutMs: args.timeoutMs,
        ownerId: callerId,
      });
    } catch (error) {
      throw new CliError(ExitCode.Usage, errorMessage(error));
    }
    const backend = await bounded(createLockBackend({ options, moduleRef: NO_MODULE_REF }), args.timeoutMs, `open ${where}`);
    const locks = new SpaceLockService(options, backend);
    cleanups.push(() => locks.beforeApplicationShutdown());
    await bounded(locks.onApplicationBootstrap(), args.timeoutMs, `set up ${where}`);
    return { locks, swept, close };
  } catch (error) {
    await close();
    throw error;
  }
}

interface StoreConnection {
  options: Pick<LockModuleOptions, 'backend' | 'redis' | 'file'>;
  close(): Promise<void>;
}

async function connectStore(
  store: StoreLocation,
  timeoutMs: number,
  where: string,
  swept: LockRecord[],
): Promise<StoreConnection> {
  if (store.backend === 'file') {
    await assertDirectory(store.dir);
    const onStale = (record: FileStaleRecord): void => {
      if (record.detectedBy === 'init') swept.push(record);
    };
    return { options: { backend: 'file', file: { dir: store.dir, onStale } }, close: async () => undefined };
  }
  const client = await connectRedis(store.url, timeoutMs, where);
  return {
    options: { backend: 'redis', redis: { client, warnOnEviction: false } },
    close: async () => {
      await client.quit().catch(() => client.disconnect());
    },
  };
}

/**
 * The CLI makes its own client rather than the backend's owned one: an operator wants one
 * connection attempt and a clear "cannot reach" within `--timeout`, not an app's patient
 * reconnect loop.
 */
async function connectRedis(url: string, timeoutMs: number, where: string): Promise<Redis> {
  let ioredis: typeof import('ioredis');
  try {
    ioredis = await import('ioredis');
  } catch {
    throw new CliError(ExitCode.Backend, 'The Redis backend needs the optional package "ioredis": npm install ioredis');
  }
  const client = new ioredis.Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectionName: 'nestjs-lock-cli',
  });
  // connect() itself rejects with a bare "Connection is closed"; the cause (ECONNREFUSED,
  // WRONGPASS, ...) only comes as an error event.
  let cause: Error | undefined;
  client.on('error', (error: Error) => (cause = error));
  try {
    await bounded(client.connect(), timeoutMs, `reach ${where}`);
  } catch (error) {
    client.disconnect();
    throw cause ? new CliError(ExitCode.Backend, `Could not reach ${where}: ${cause.message}`) : error;
  }
  return client;
}

/** The file backend creates a missing directory; an operator tool must not, or a typo looks like "no locks". */
async function assertDirectory(dir: string): Promise<void> {
  const found = await stat(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw new CliError(ExitCode.Backend, `Cannot read lock directory ${dir}: ${error.message}`);
  });
  if (!found) throw new CliError(ExitCode.Backend, `Lock directory ${dir} does not exist (the CLI never creates it)`);
  if (!found.isDirectory()) throw new CliError(ExitCode.Backend, `${dir} is not a directory`);
}

/** Rejects with a backend `CliError` when `work` has not settled in `ms`; also maps its own failures. */
export function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  const failed = (error: unknown): never => {
    throw error instanceof CliError ? error : new CliError(ExitCode.Backend, `Could not ${what}: ${errorMessage(error)}`);
  };
  return settleWithin(work, ms, () => new CliError(ExitCode.Backend, `Could not ${what}: no answer within ${ms} ms`)).catch(failed);
}
