import type { LockBackendFactory } from '../lock-backend.factory';
import { FileLockBackend } from './file-lock.backend';

export const createFileBackend: LockBackendFactory = ({ options }) => new FileLockBackend(options.file);
