import { LockNotSupportedError } from '../../lock.errors';
import type { LockBackendFactory } from '../lock-backend.factory';

// Placeholder until the file backend lands.
export const createFileBackend: LockBackendFactory = () => {
  throw new LockNotSupportedError('The file backend is not available yet');
};
