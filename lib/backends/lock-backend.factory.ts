import type { ModuleRef } from '@nestjs/core';
import type { LockBackend } from '../lock-backend.interface';
import type { BuiltInBackendName, ResolvedLockModuleOptions } from '../lock-module-options.interface';

export interface LockBackendFactoryContext {
  options: ResolvedLockModuleOptions;
  /** Resolves providers of the app (for example a Redis connection module). */
  moduleRef: ModuleRef;
}

export type LockBackendFactory = (context: LockBackendFactoryContext) => LockBackend | Promise<LockBackend>;

/**
 * Built-in backends, loaded on first use so an app on the memory backend never loads ioredis
 * or the native file-lock addon.
 */
const BUILT_IN_BACKENDS: Record<BuiltInBackendName, () => Promise<LockBackendFactory>> = {
  memory: async () => (await import('./memory/memory-backend.factory')).createMemoryBackend,
  file: async () => (await import('./file/file-backend.factory')).createFileBackend,
  redis: async () => (await import('./redis/redis-backend.factory')).createRedisBackend,
};

export async function createLockBackend(context: LockBackendFactoryContext): Promise<LockBackend> {
  const { backend } = context.options;
  if (typeof backend !== 'string') return backend;
  const factory = await BUILT_IN_BACKENDS[backend]();
  return factory(context);
}
