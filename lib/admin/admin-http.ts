import { BadRequestException, ServiceUnavailableException } from '@nestjs/common';
import { InvalidLockKeyError, LockBackendError, LockOptionsError } from '../lock.errors';

/** A `limit` query parameter: absent, or a whole number. */
export function limitParam(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^\d+$/.test(raw)) throw new BadRequestException('limit must be a whole number');
  return Number(raw);
}

/** Library errors as HTTP answers: bad input is the client's, an unreachable store is ours. */
export async function toHttp<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof InvalidLockKeyError || error instanceof LockOptionsError) throw new BadRequestException(error.message);
    if (error instanceof LockBackendError) throw new ServiceUnavailableException(error.message);
    throw error;
  }
}
