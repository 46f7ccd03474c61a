import { hostname } from 'node:os';
import {
  DEFAULT_BACKEND_TIMEOUT_MS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_TTL_MS,
  MAX_KEY_BYTES,
  MAX_LOCK_LIMIT,
  MAX_TIMER_MS,
} from './lock.constants';
import { InvalidLockKeyError, LockOptionsError } from './lock.errors';
import type { LockCallOptions } from './held-lock.interface';
import { DEFAULT_LOCK_NAME } from './events/lock-event.interface';
import type { LockModuleOptions, ResolvedLockModuleOptions } from './lock-module-options.interface';

const BUILT_IN_BACKENDS = new Set(['memory', 'file', 'redis']);
// C0 controls, DEL and C1 controls: they corrupt logs, file names and protocol framing.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;

export function assertValidKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new InvalidLockKeyError(key, 'must be a string');
  if (key.length === 0) throw new InvalidLockKeyError(key, 'must not be empty');
  if (CONTROL_CHARACTERS.test(key)) throw new InvalidLockKeyError(key, 'must not contain control characters');
  // A UTF-16 unit is at most 3 bytes of UTF-8: short keys need no count.
  if (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidLockKeyError(key, `must be at most ${MAX_KEY_BYTES} bytes of UTF-8`);
  }
}

export function assertDuration(name: string, value: unknown, { allowZero = false } = {}): asserts value is number {
  const ok =
    typeof value === 'number' && Number.isInteger(value) && (allowZero ? value >= 0 : value > 0) && value <= MAX_TIMER_MS;
  if (!ok) {
    throw new LockOptionsError(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer number of milliseconds ≤ ${MAX_TIMER_MS}, got ${String(value)}`,
    );
  }
}

export function resolveLockOptions(options: LockModuleOptions | undefined): ResolvedLockModuleOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new LockOptionsError('LockModule options must be an object');
  }
  const given = options ?? {};
  const backend = given.backend ?? 'memory';
  if (typeof backend === 'string') {
    if (!BUILT_IN_BACKENDS.has(backend)) {
      throw new LockOptionsError(`Unknown lock backend "${backend}"; use 'memory', 'file', 'redis' or a LockBackend instance`);
    }
  } else if (!isLockBackend(backend)) {
    throw new LockOptionsError('backend must be a built-in name or an object implementing LockBackend');
  }
  const ttlMs = given.ttlMs ?? DEFAULT_TTL_MS;
  assertDuration('ttlMs', ttlMs);
  const heartbeatMs = given.heartbeatMs ?? Math.max(1, Math.floor(ttlMs / 3));
  assertDuration('heartbeatMs', heartbeatMs);
  if (heartbeatMs >= ttlMs) throw new LockOptionsError(`heartbeatMs (${heartbeatMs}) must be below ttlMs (${ttlMs})`);
  const backendTimeoutMs = given.backendTimeoutMs ?? DEFAULT_BACKEND_TIMEOUT_MS;
  assertDuration('backendTimeoutMs', backendTimeoutMs);
  const maxLocalHandoffs = given.maxLocalHandoffs ?? 8;
  if (!Number.isInteger(maxLocalHandoffs) || maxLocalHandoffs < 0) {
    throw new LockOptionsError(`maxLocalHandoffs must be a non-negative integer, got ${String(maxLocalHandoffs)}`);
  }
  const keyPrefix = given.keyPrefix ?? DEFAULT_KEY_PREFIX;
  if (typeof keyPrefix !== 'string' || CONTROL_CHARACTERS.test(keyPrefix) || keyPrefix.length > 128) {
    throw new LockOptionsError('keyPrefix must be a string of at most 128 characters without control characters');
  }
  const ownerId = given.ownerId ?? `${hostname()}:${process.pid}`;
  assertValidOwnerId(ownerId);
  if (given.onLockLost !== undefined && typeof given.onLockLost !== 'function') {
    throw new LockOptionsError('onLockLost must be a function');
  }
  // That it extends LockInterceptor is checked where the class is built (lock.module.ts).
  if (given.interceptor !== undefined && typeof given.interceptor !== 'function') {
    throw new LockOptionsError('interceptor must be a class extending LockInterceptor');
  }
  return {
    backend,
    ttlMs,
    heartbeatMs,
    keyPrefix,
    ownerId,
    backendTimeoutMs,
    maxLocalHandoffs,
    onLockLost: given.onLockLost,
    interceptor: given.interceptor,
    memory: given.memory ?? {},
    file: given.file ?? {},
    redis: given.redis ?? {},
  };
}

/** One printable line of at most 512 characters (it is written to logs). */
export function assertPrintable(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value.length > 512 || CONTROL_CHARACTERS.test(value)) {
    throw new LockOptionsError(`${name} must be a string of at most 512 characters without control characters`);
  }
}

export function assertValidOwnerId(ownerId: unknown): asserts ownerId is string {
  if (typeof ownerId !== 'string' || ownerId.length === 0 || ownerId.length > 256 || CONTROL_CHARACTERS.test(ownerId)) {
    throw new LockOptionsError('ownerId must be a non-empty string of at most 256 characters without control characters');
  }
}

/** Checks per-call options and fills the defaults from the module. */
export function resolveCallOptions(
  options: LockCallOptions | undefined,
  defaults: ResolvedLockModuleOptions,
): Required<LockCallOptions> {
  const given = options ?? {};
  assertCallOptions(given);
  // The module's defaults were checked by `resolveLockOptions`.
  return {
    ttlMs: given.ttlMs ?? defaults.ttlMs,
    waitMs: given.waitMs ?? 0,
    mode: given.mode ?? 'exclusive',
    ownerId: given.ownerId ?? defaults.ownerId,
    minHoldMs: given.minHoldMs ?? 0,
    name: given.name ?? DEFAULT_LOCK_NAME,
    limit: given.limit ?? 1,
  };
}

/**
 * The one check of call options (`ttlMs`, `waitMs`, `mode`, `ownerId`, `minHoldMs`, `name`, `limit`),
 * each when given: per call through `resolveCallOptions`, and once at decoration for `@WithLock`.
 */
export function assertCallOptions(given: LockCallOptions): void {
  if (typeof given !== 'object' || given === null) throw new LockOptionsError('lock call options must be an object');
  if (given.ttlMs !== undefined) assertDuration('ttlMs', given.ttlMs);
  if (given.waitMs !== undefined) assertDuration('waitMs', given.waitMs, { allowZero: true });
  if (given.mode !== undefined && given.mode !== 'exclusive' && given.mode !== 'shared') {
    throw new LockOptionsError(`mode must be 'exclusive' or 'shared', got ${String(given.mode)}`);
  }
  if (given.ownerId !== undefined) assertValidOwnerId(given.ownerId);
  if (given.minHoldMs !== undefined) assertDuration('minHoldMs', given.minHoldMs, { allowZero: true });
  if (given.name !== undefined) assertLockName(given.name);
  if (given.limit !== undefined) assertLimit(given.limit, given.mode);
}

/** `lock.name`: a label for metrics and traces, so short and printable. */
function assertLockName(name: unknown): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > 128 || CONTROL_CHARACTERS.test(name)) {
    throw new LockOptionsError('name must be a non-empty string of at most 128 characters without control characters');
  }
}

function assertLimit(limit: unknown, mode: unknown): void {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LOCK_LIMIT) {
    throw new LockOptionsError(`limit must be an integer from 1 to ${MAX_LOCK_LIMIT}, got ${String(limit)}`);
  }
  // Readers already share a key; a semaphore of readers beside writers is not a model we offer.
  if (mode === 'shared') throw new LockOptionsError(`limit is for exclusive permits; it cannot be combined with mode 'shared'`);
}

function isLockBackend(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  if (typeof candidate.name !== 'string' || typeof candidate.capabilities !== 'object' || candidate.capabilities === null) {
    return false;
  }
  return ['tryAcquire', 'extend', 'release', 'waitForRelease', 'inspect', 'list', 'forceRelease'].every(
    (method) => typeof candidate[method] === 'function',
  );
}
