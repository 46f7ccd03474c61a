import type { ModuleRef } from '@nestjs/core';
import { stat } from 'node:fs/promises';
import { createLockBackend } from '../backends/lock-backend.factory';
import { LockOptionsError } from '../lock.errors';
import { resolveLockOptions } from '../lock-options.validation';
import { SpaceLockService } from '../space-lock.service';
import { describeStore, type CommonArgs } from './args';
import { CliError, ExitCode } from './exit-codes';

export interface OpenStore {
  locks: SpaceLockService;
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
  if (args.store.backend === 'file') await assertDirectory(args.store.dir);
  let options;
  try {
    options = resolveLockOptions({
      backend: args.store.backend,
      keyPrefix: args.keyPrefix,
      backendTimeoutMs: args.timeoutMs,
      ownerId: callerId,
      ...(args.store.backend === 'redis' ? { redis: { url: args.store.url } } : { file: { dir: args.store.dir } }),
    });
  } catch (error) {
    throw new CliError(ExitCode.Usage, errorText(error));
  }
  const backend = await bounded(createLockBackend({ options, moduleRef: NO_MODULE_REF }), args.timeoutMs, `open ${where}`);
  const locks = new SpaceLockService(options, backend);
  const close = (): Promise<void> =>
    bounded(locks.beforeApplicationShutdown(), args.timeoutMs, 'close').catch(() => undefined);
  try {
    await bounded(locks.onApplicationBootstrap(), args.timeoutMs, `connect to ${where}`);
  } catch (error) {
    await close();
    throw error;
  }
  return { locks, close };
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
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new CliError(ExitCode.Backend, `Could not ${what}: no answer within ${ms} ms`)), ms);
    timer.unref();
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof CliError ? error : new CliError(ExitCode.Backend, `Could not ${what}: ${errorText(error)}`));
      },
    );
  });
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
