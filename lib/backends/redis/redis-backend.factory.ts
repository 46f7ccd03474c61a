import { LockNotSupportedError } from '../../lock.errors';
import type { LockBackendFactory } from '../lock-backend.factory';

// Placeholder until the redis backend lands.
export const createRedisBackend: LockBackendFactory = () => {
  throw new LockNotSupportedError('The redis backend is not available yet');
};
