/** The part of `fs-native-extensions` this backend uses (the package ships no type declarations). */
export interface NativeFileLock {
  /** Non-blocking whole-file lock; `false` when another open file description holds a conflicting one. */
  tryLock(fd: number, options: { shared: boolean }): boolean;
  unlock(fd: number): void;
}

interface NativeModule {
  tryLock(fd: number, offset: number, length: number, options: { shared?: boolean }): boolean;
  unlock(fd: number, offset?: number, length?: number): void;
}

let loaded: { native: NativeFileLock } | { error: Error } | undefined;

/**
 * Load the addon on first use only, so apps on the memory or Redis backend never load native
 * code, and an install without the optional dependency (or without a prebuild for this
 * platform) still starts in the degraded mode.
 */
export function loadNativeFileLock(): { native: NativeFileLock } | { error: Error } {
  if (loaded) return loaded;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = require('fs-native-extensions') as NativeModule;
    loaded = {
      native: {
        tryLock(fd, { shared }) {
          try {
            return addon.tryLock(fd, 0, 0, { shared });
          } catch (error) {
            // The addon maps only EAGAIN to `false`; POSIX also allows EACCES for a conflict.
            if ((error as NodeJS.ErrnoException).code === 'EACCES') return false;
            throw error;
          }
        },
        unlock(fd) {
          addon.unlock(fd, 0, 0);
        },
      },
    };
  } catch (error) {
    loaded = { error: error instanceof Error ? error : new Error(String(error)) };
  }
  return loaded;
}

/** Errors meaning "this filesystem cannot hold these locks", as opposed to a real failure. */
export const UNSUPPORTED_LOCK_ERRORS: ReadonlySet<string> = new Set(['EINVAL', 'ENOLCK', 'ENOSYS', 'EOPNOTSUPP', 'ENOTSUP']);
