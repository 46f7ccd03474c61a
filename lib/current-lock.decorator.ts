import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { HeldLock } from './held-lock.interface';
import { LOCK_REQUEST_PROPERTY } from './lock.constants';
import { locksItself } from './locked-method';

/**
 * Stands in for the lock while Nest resolves a route's arguments: a locked route takes its
 * lock after that (in its trampoline), then puts the lock in this argument's place.
 */
const PENDING_LOCK: unique symbol = Symbol('nestjs-lock:pending-lock');

/**
 * The lock(s) `@WithLock` took for this request: pass `lock.signal` to long work and
 * `lock.fencingToken` to the resource you write. With several keys, the first (sorted).
 */
export const CurrentLock = createParamDecorator((_data: unknown, context: ExecutionContext): HeldLock | typeof PENDING_LOCK | undefined => {
  if (locksItself(context.getClass(), context.getHandler())) return PENDING_LOCK;
  // Other transports: `LockInterceptor` took the lock before the arguments were resolved.
  const request = context.switchToHttp().getRequest<Record<string, HeldLock[] | undefined>>();
  return request?.[LOCK_REQUEST_PROPERTY]?.[0];
});

/** `args` with every `@CurrentLock()` placeholder replaced by the first held lock. */
export function withCurrentLock(args: unknown[], locks: readonly HeldLock[]): unknown[] {
  for (let index = 0; index < args.length; index += 1) {
    if (args[index] === PENDING_LOCK) args[index] = locks[0];
  }
  return args;
}
