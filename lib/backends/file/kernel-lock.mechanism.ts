import { constants, type Stats } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { LockBackendError } from '../../lock.errors';
import type { LockMode } from '../../lock-backend.interface';
import type { KeyFiles } from './lock-file-names';
import type { Claim, ClaimAttempt, LockMechanism } from './lock-mechanism';
import type { NativeFileLock } from './native-file-lock';

// libuv adds O_CLOEXEC itself, so children we spawn never inherit (and keep alive) the lock.
const OPEN_LOCK_FILE = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW;
/** The lock file holds the key's fencing counter as fixed-width decimal. */
const COUNTER_WIDTH = 20;
/** A lock file swapped between our open and our lock is retried this often before giving up. */
const INODE_RETRIES = 3;

/**
 * Kernel-held locks on a lock file that is never unlinked: Linux open-file-description locks
 * (`fcntl F_OFD_SETLK`, whole file, shared or exclusive), dropped by the kernel when the last
 * descriptor of the holder closes, including on SIGKILL. The fencing counter lives in the lock
 * file and is only written under the exclusive lock.
 */
export class KernelLockMechanism implements LockMechanism {
  readonly kind = 'kernel';

  constructor(private readonly native: NativeFileLock) {}

  async claim(files: KeyFiles, mode: LockMode): Promise<ClaimAttempt> {
    for (let attempt = 0; attempt < INODE_RETRIES; attempt++) {
      const { handle, opened } = await openLockFile(files.anchorPath);
      let kept = false;
      try {
        if (!this.native.tryLock(handle.fd, { shared: mode === 'shared' })) return { claim: null, retryAfterMs: null };
        // Whoever cleans lock files does so under the exclusive lock; if the path now names
        // another file (or none), we locked an orphan that nobody else will ever see.
        const current = await lstat(files.anchorPath).catch(() => null);
        if (!current || current.ino !== opened.ino || current.dev !== opened.dev) continue;
        const fencingToken = mode === 'exclusive' ? await bumpCounter(handle) : await readCounter(handle);
        kept = true;
        return { claim: new KernelClaim(handle, this.native, fencingToken) };
      } finally {
        // Closing the only descriptor of this open file description drops any lock we took.
        if (!kept) await handle.close();
      }
    }
    throw new LockBackendError('file', `lock file ${files.anchorPath} keeps being replaced; is something deleting lock files?`);
  }
}

class KernelClaim implements Claim {
  private released = false;

  constructor(
    private readonly handle: FileHandle,
    private readonly native: NativeFileLock,
    public fencingToken: number,
  ) {}

  async renew(): Promise<number | null> {
    if (this.released) return null;
    this.fencingToken = await bumpCounter(this.handle);
    return this.fencingToken;
  }

  async refresh(): Promise<boolean> {
    return !this.released;
  }

  async release(): Promise<boolean> {
    if (this.released) return false;
    this.released = true;
    try {
      // Unlock before anything slow so a waiter can take it at once; the handle is still ours,
      // so this can never touch a descriptor number reused by someone else.
      this.native.unlock(this.handle.fd);
      // The touch is what the waiters' directory watch sees (an unlock makes no event).
      const now = new Date();
      await this.handle.utimes(now, now).catch(() => undefined);
    } finally {
      await this.handle.close();
    }
    return true;
  }

  expiresInMs(): null {
    return null;
  }
}

async function openLockFile(path: string): Promise<{ handle: FileHandle; opened: Stats }> {
  let handle: FileHandle;
  try {
    handle = await open(path, OPEN_LOCK_FILE, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new LockBackendError('file', `${path} is a symbolic link; refusing to follow it`, error);
    }
    throw error;
  }
  const info = await handle.stat().catch(async (error: unknown) => {
    await handle.close();
    throw error;
  });
  // A FIFO, device or hard link planted at our name must not be locked or written to.
  if (!info.isFile() || info.nlink > 1) {
    await handle.close();
    throw new LockBackendError('file', `${path} is not a plain lock file (planted link or special file?); refusing to use it`);
  }
  return { handle, opened: info };
}

async function readCounter(handle: FileHandle): Promise<number> {
  const buffer = Buffer.alloc(COUNTER_WIDTH);
  const { bytesRead } = await handle.read(buffer, 0, COUNTER_WIDTH, 0);
  const value = Number.parseInt(buffer.subarray(0, bytesRead).toString('latin1'), 10);
  return Number.isSafeInteger(value) && value > 0 ? value : 0;
}

async function bumpCounter(handle: FileHandle): Promise<number> {
  const next = (await readCounter(handle)) + 1;
  // Fixed width: one small in-place write, never a truncate that a crash could leave empty.
  await handle.write(String(next).padStart(COUNTER_WIDTH - 1, '0') + '\n', 0, 'latin1');
  return next;
}
