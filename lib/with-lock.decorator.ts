import { SetMetadata } from '@nestjs/common';
import type { LockMode } from './lock-backend.interface';
import type { LockCallOptions } from './held-lock.interface';
import { WITH_LOCK_METADATA } from './lock.constants';
import { LockOptionsError } from './lock.errors';
import {
  CompiledKeyTemplate,
  type ArgumentsLockKeyFunction,
  type HttpLockKeyFunction,
  type LockKeyTemplate,
} from './lock-key.template';
import { lockTrampoline } from './locked-method';
import { assertCallOptions } from './lock-options.validation';

export interface WithLockOptions {
  /** Lease length; default the module's `ttlMs`. */
  ttlMs?: number;
  /** Wait this long for the lock before answering "held". Default 0. */
  waitMs?: number;
  mode?: LockMode;
  /** At most this many holders at once (a semaphore; see `LockCallOptions.limit`). Default 1. */
  limit?: number;
  ownerId?: string;
  /**
   * When the lock is held: `'throw'` (HTTP 503 with `Retry-After`; `LockHeldError` on
   * providers) or `'skip'` (providers return `undefined`; HTTP answers `{ skipped }`).
   * Default `'throw'` on controllers, `'skip'` on providers.
   */
  onLocked?: 'throw' | 'skip';
  /**
   * Keep the lock at least this long after the grant (see `LockCallOptions.minHoldMs`). On a
   * method `@nestjs/schedule` runs, the default comes from its schedule (README: scheduled jobs).
   */
  minHoldMs?: number;
  /**
   * `lock.name` in metrics, traces and lock events. Default: the template(s) as written
   * (`space:{params.spaceId}`), a key function's name otherwise: bounded, never the key.
   */
  name?: string;
}

export type LockKeyPart = CompiledKeyTemplate | ((...args: never[]) => string);

export interface WithLockMetadata {
  keys: LockKeyPart[];
  options: WithLockOptions;
  /** `options` without `onLocked`, with the lock's `name`, as every call passes them. */
  callOptions: LockCallOptions;
}

/**
 * Run the decorated controller handler or provider method only while holding the lock(s).
 * Several templates take all keys or none, in sorted order.
 *
 * ```ts
 * @Post(':spaceId/sync')
 * @WithLock('space:{params.spaceId}')
 * sync() {}
 * ```
 */
export function WithLock(
  keys: string | HttpLockKeyFunction | readonly (string | HttpLockKeyFunction)[],
  options?: WithLockOptions,
): MethodDecorator & ClassDecorator;
export function WithLock<Args extends unknown[]>(
  keys: string | ArgumentsLockKeyFunction<Args> | readonly (string | ArgumentsLockKeyFunction<Args>)[],
  options?: WithLockOptions,
): MethodDecorator & ClassDecorator;
export function WithLock(
  keys: LockKeyTemplate | readonly LockKeyTemplate[],
  options: WithLockOptions = {},
): MethodDecorator & ClassDecorator {
  const templates = Array.isArray(keys) ? keys : [keys as LockKeyTemplate];
  if (templates.length === 0) throw new LockOptionsError('@WithLock needs at least one key');
  validateOptions(options);
  const callOptions: WithLockOptions = { name: templateName(templates), ...options };
  delete callOptions.onLocked;
  const metadata: WithLockMetadata = {
    keys: templates.map((template) => (typeof template === 'function' ? template : new CompiledKeyTemplate(template))),
    options: { ...options },
    // Frozen: the service resolves it once, not per call (`LockAcquirer.callOptions`).
    callOptions: Object.freeze(callOptions),
  };
  const decorate = SetMetadata(WITH_LOCK_METADATA, metadata);
  return ((target: object, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (!descriptor || propertyKey === undefined) return decorate(target as never);
    decorate(target, propertyKey, descriptor);
    if (typeof descriptor.value === 'function') descriptor.value = lockTrampoline(descriptor.value, propertyKey);
    return descriptor;
  }) as MethodDecorator & ClassDecorator;
}

/** What a method's lock is called by default: its template(s), never a rendered key. */
function templateName(templates: readonly LockKeyTemplate[]): string {
  const name = templates.map((template) => (typeof template === 'function' ? template.name || 'key-function' : template)).join(',');
  return name.length <= 128 ? name : `${name.slice(0, 127)}…`;
}

function validateOptions(options: WithLockOptions): void {
  if (typeof options !== 'object' || options === null) throw new LockOptionsError('@WithLock options must be an object');
  assertCallOptions(options);
  if (options.onLocked !== undefined && options.onLocked !== 'throw' && options.onLocked !== 'skip') {
    throw new LockOptionsError(`@WithLock onLocked must be 'throw' or 'skip'`);
  }
}
