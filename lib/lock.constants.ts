/** Raw options as the user passed them to `forRoot` / `forRootAsync`. */
export const LOCK_MODULE_OPTIONS = Symbol('LOCK_MODULE_OPTIONS');
/** Validated options with defaults applied (`ResolvedLockModuleOptions`). */
export const LOCK_OPTIONS = Symbol('LOCK_OPTIONS');
/** Metadata key `@WithLock` writes on a method or class. */
export const WITH_LOCK_METADATA = 'nestjs-lock:with-lock';

export const DEFAULT_TTL_MS = 30_000;
export const DEFAULT_KEY_PREFIX = 'lock:';
export const DEFAULT_BACKEND_TIMEOUT_MS = 2_000;
export const MAX_KEY_BYTES = 512;
/** The largest `limit` a semaphore may have. */
export const MAX_LOCK_LIMIT = 10_000;
/** Longest timer Node accepts without overflowing to 1 ms. */
export const MAX_TIMER_MS = 2_147_483_647;
