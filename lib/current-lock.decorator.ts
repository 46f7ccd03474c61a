import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { HeldLock } from './held-lock.interface';
import { LOCK_REQUEST_PROPERTY } from './lock.constants';

/**
 * The lock(s) `@WithLock` took for this request: pass `lock.signal` to long work and
 * `lock.fencingToken` to the resource you write. With several keys, the first (sorted).
 */
export const CurrentLock = createParamDecorator((_data: unknown, context: ExecutionContext): HeldLock | undefined => {
  const request = context.switchToHttp().getRequest<Record<string, HeldLock[] | undefined>>();
  return request?.[LOCK_REQUEST_PROPERTY]?.[0];
});
