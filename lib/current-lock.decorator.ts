import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import type { HeldLock } from './held-lock.interface';
import { WITH_LOCK_METADATA } from './lock.constants';

/**
 * Stands in for the lock while Nest resolves a handler's arguments: a locked handler takes its
 * lock after that (in its trampoline's runner), then puts the lock in this argument's place.
 */
const PENDING_LOCK: unique symbol = Symbol('nestjs-lock:pending-lock');

/**
 * The lock(s) `@WithLock` took for this request: pass `lock.signal` to long work and
 * `lock.fencingToken` to the resource you write. With several keys, the first (sorted).
 */
export const CurrentLock = createParamDecorator((_data: unknown, context: ExecutionContext): HeldLock | typeof PENDING_LOCK | undefined => {
  const locked = Reflect.hasMetadata(WITH_LOCK_METADATA, context.getHandler()) || Reflect.hasMetadata(WITH_LOCK_METADATA, context.getClass());
  return locked ? PENDING_LOCK : undefined;
});

/** `args` with every `@CurrentLock()` placeholder replaced by the first held lock. */
export function withCurrentLock(args: unknown[], locks: readonly HeldLock[]): unknown[] {
  for (let index = 0; index < args.length; index += 1) {
    if (args[index] === PENDING_LOCK) args[index] = locks[0];
  }
  return args;
}
