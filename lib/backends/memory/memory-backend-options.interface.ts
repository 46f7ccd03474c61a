import type { MemoryLockStore } from './memory-lock.store';

export interface MemoryBackendOptions {
  /**
   * Share one store between several module instances to simulate replicas in tests.
   * Default: a store private to this module instance.
   */
  store?: MemoryLockStore;
}
