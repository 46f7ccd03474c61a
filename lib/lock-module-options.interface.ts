import type { ModuleMetadata, Type, InjectionToken, OptionalFactoryDependency } from '@nestjs/common';
import type { LockBackend } from './lock-backend.interface';
import type { LockLostEvent } from './held-lock.interface';
import type { LockInterceptor } from './lock.interceptor';
import type { MemoryBackendOptions } from './backends/memory/memory-backend-options.interface';
import type { FileBackendOptions } from './backends/file/file-backend-options.interface';
import type { RedisBackendOptions } from './backends/redis/redis-backend-options.interface';

export type BuiltInBackendName = 'memory' | 'file' | 'redis';

export interface LockModuleOptions {
  /** Which store holds the locks. Default `'memory'` (this process only). */
  backend?: BuiltInBackendName | LockBackend;
  /** Lease length in ms. Default 30 000. */
  ttlMs?: number;
  /** Heartbeat interval in ms; must be below `ttlMs`. Default `ttlMs / 3`. */
  heartbeatMs?: number;
  /** Prepended to every key in the store. Default `'lock:'`. */
  keyPrefix?: string;
  /** Who we are in holder records. Default `<hostname>:<pid>`. */
  ownerId?: string;
  /** Upper bound on any single backend call before `LockBackendError`. Default 2 000 ms. */
  backendTimeoutMs?: number;
  /**
   * Consecutive hand-offs between waiters of this process before the lease is released to
   * the store so other processes get a turn. Default 8.
   */
  maxLocalHandoffs?: number;
  /** Called once for every lease this process loses while holding it. Must not throw. */
  onLockLost?: (event: LockLostEvent) => void;
  /**
   * How `@WithLock` handlers answer "held", "store down" and "bad key": a subclass of
   * `LockInterceptor` overriding its protected methods, built by Nest's injector in this
   * module's scope (so it may inject its own dependencies besides the Reflector and the
   * SpaceLockService it passes to `super`). Default `LockInterceptor`.
   */
  interceptor?: Type<LockInterceptor>;
  memory?: MemoryBackendOptions;
  file?: FileBackendOptions;
  redis?: RedisBackendOptions;
}

export interface ResolvedLockModuleOptions
  extends Required<
    Pick<LockModuleOptions, 'ttlMs' | 'heartbeatMs' | 'keyPrefix' | 'ownerId' | 'backendTimeoutMs' | 'maxLocalHandoffs'>
  > {
  backend: BuiltInBackendName | LockBackend;
  onLockLost?: (event: LockLostEvent) => void;
  interceptor?: Type<LockInterceptor>;
  memory: MemoryBackendOptions;
  file: FileBackendOptions;
  redis: RedisBackendOptions;
}

export interface LockOptionsFactory {
  createLockOptions(): LockModuleOptions | Promise<LockModuleOptions>;
}

export interface LockModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  isGlobal?: boolean;
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useFactory?: (...args: never[]) => LockModuleOptions | Promise<LockModuleOptions>;
  useClass?: Type<LockOptionsFactory>;
  useExisting?: Type<LockOptionsFactory>;
}
