import type { LockBackendFactory } from '../lock-backend.factory';
import { MemoryLockBackend } from './memory-lock.backend';

export const createMemoryBackend: LockBackendFactory = ({ options }) => new MemoryLockBackend(options.memory);
