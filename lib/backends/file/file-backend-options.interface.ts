import type { LockRecord } from '../../lock-backend.interface';

/**
 * How the file backend holds a lock.
 * - `kernel`: an OS lock on the lock file (Linux: open-file-description locks, `fcntl F_OFD_SETLK`;
 *   macOS: `flock`), dropped by the kernel the moment the holder exits or is killed.
 * - `exclusive-create`: degraded mode for filesystems without those locks: a claim file created
 *   atomically, kept alive by the heartbeat and taken over once its TTL has passed. Crash safety
 *   is then bounded by the TTL, not immediate.
 * - `auto`: `kernel` when the native addon loads and the directory supports it, else `exclusive-create`.
 */
export type FileLockMechanism = 'auto' | 'kernel' | 'exclusive-create';

/** A holder record the backend believes is left over from a holder that is gone. */
export interface FileStaleRecord extends LockRecord {
  /** Why the holder is believed gone (dead pid on this host, lock taken over, TTL passed). */
  stale: string;
  /** What found it. */
  detectedBy: 'acquire' | 'inspect' | 'list' | 'init' | 'force-release';
  /**
   * Where the metadata was read from: the holder's record file (already removed when the holder
   * is provably gone), or the lock file itself for an exclusive holder's record (format 2).
   */
  recordPath: string;
}

export interface FileBackendOptions {
  /**
   * Directory holding lock files and holder records; created with mode 0700 when absent (an
   * existing directory keeps its mode). Relative paths resolve against `process.cwd()` at start-up.
   * Every process that must exclude each other has to use the same directory.
   * Default `./.locks`.
   */
  dir?: string;
  /**
   * Which lock to use; see `FileLockMechanism`. Force `exclusive-create` to test the degraded
   * path, or `kernel` to refuse to start without real OS locks. Default `'auto'`.
   */
  mechanism?: FileLockMechanism;
  /**
   * Called (not awaited) for each holder record left by a holder that is gone: when a lock is
   * taken over such a record, when `inspect`/`list` find a record naming a dead pid of this host,
   * and by the start-up sweep. Errors it throws are logged and ignored. Default: none (the
   * backend logs a warning either way).
   */
  onStale?: (meta: FileStaleRecord) => void | Promise<void>;
  /**
   * Longest pause between two looks at a lock while waiting for it. Releases wake waiters at
   * once through a directory watch (inotify), and the death of an exclusive holder on this host
   * is noticed within milliseconds through its pid; this fallback bounds what neither covers:
   * a shared holder killed with SIGKILL, a missed watch event, a platform without watches.
   * Default 25 ms.
   */
  recheckMs?: number;
}
