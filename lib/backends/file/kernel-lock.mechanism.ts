import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { LockBackendError } from '../../lock.errors';
import type { LockMode } from '../../lock-backend.interface';
import type { KeyFiles } from './lock-file-names';
import { HOSTNAME, isPidAlive } from './holder-records';
import type { Claim, ClaimAttempt, ClaimIdentity, LockMechanism } from './lock-mechanism';
import type { NativeFileLock } from './native-file-lock';

// libuv adds O_CLOEXEC itself, so children we spawn never inherit (and keep alive) the lock.
const OPEN_LOCK_FILE = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW;
/**
 * The lock file holds two fixed-width fields, rewritten in place (never truncated, so a crash
 * cannot leave them empty): the key's fencing counter, and the last exclusive holder as
 * `<pid> <host tag>` so a waiter on this host can watch that pid die.
 */
const COUNTER_WIDTH = 20;
const HOLDER_WIDTH = 20;
const PID_WIDTH = 10;
const HOST_TAG = createHash('sha256').update(HOSTNAME).digest('hex').slice(0, HOLDER_WIDTH - PID_WIDTH - 2);
/** A lock file swapped between our open and our lock is retried this often before giving up. */
const INODE_RETRIES = 3;

/**
 * Kernel-held locks on a lock file that is never unlinked: Linux open-file-description locks
 * (`fcntl F_OFD_SETLK`, whole file, shared or exclusive), dropped by the kernel when the last
 * descriptor of the holder closes, including on SIGKILL. The fencing counter lives in the lock
 * file and only advances under the exclusive lock.
 */
export class KernelLockMechanism implements LockMechanism {
  readonly kind = 'kernel';

  constructor(private readonly native: NativeFileLock) {}

  async claim(files: KeyFiles, mode: LockMode, identity: ClaimIdentity): Promise<ClaimAttempt> {
    for (let attempt = 0; attempt < INODE_RETRIES; attempt++) {
      const { handle, opened } = await openLockFile(files.anchorPath);
      let kept = false;
      try {
        if (!this.native.tryLock(handle.fd, { shared: mode === 'shared' })) {
          return { claim: null, retryAfterMs: null, holderPid: (await readFields(handle)).holderPid };
        }
        // This library never unlinks lock files, but a person or tool might: if the path now
        // names another file (or none), we locked an orphan that nobody else will ever see.
        const current = await lstat(files.anchorPath).catch(() => null);
        if (!current || current.ino !== opened.ino || current.dev !== opened.dev) continue;
        const fencingToken = await this.stamp(handle, mode, identity);
        kept = true;
        return { claim: new KernelClaim(handle, this.native, fencingToken) };
      } finally {
        // Closing the only descriptor of this open file description drops any lock we took.
        if (!kept) await handle.close();
      }
    }
    throw new LockBackendError('file', `lock file ${files.anchorPath} keeps being replaced; is something deleting lock files?`);
  }

  /**
   * Exclusive: next fencing token and our pid, in one write under the exclusive lock. Shared:
   * the current token; a dead pid left by a crashed writer is cleared, so waiters do not take
   * it for the holder (shared holders leave no pid: only the re-check notices their death).
   */
  private async stamp(handle: FileHandle, mode: LockMode, identity: ClaimIdentity): Promise<number> {
    if (mode === 'exclusive') return advance(handle, identity);
    const { counter, holderPid } = await readFields(handle);
    if (holderPid !== undefined && !isPidAlive(holderPid)) await writeFields(handle, counter, 0);
    return counter;
  }
}

class KernelClaim implements Claim {
  private released = false;

  constructor(
    private readonly handle: FileHandle,
    private readonly native: NativeFileLock,
    public fencingToken: number,
  ) {}

  async renew(identity: ClaimIdentity): Promise<number | null> {
    if (this.released) return null;
    this.fencingToken = await advance(this.handle, identity);
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

async function readFields(handle: FileHandle): Promise<{ counter: number; holderPid?: number }> {
  const buffer = Buffer.alloc(COUNTER_WIDTH + HOLDER_WIDTH);
  const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
  const text = buffer.subarray(0, bytesRead).toString('latin1');
  const counter = Number.parseInt(text.slice(0, COUNTER_WIDTH), 10);
  const [pid, tag] = text.slice(COUNTER_WIDTH).trim().split(' ');
  const holderPid = Number.parseInt(pid, 10);
  return {
    counter: Number.isSafeInteger(counter) && counter > 0 ? counter : 0,
    holderPid: tag === HOST_TAG && holderPid > 0 ? holderPid : undefined,
  };
}

/** Next fencing token, stamped with its holder's pid in one write. Only under the exclusive lock. */
async function advance(handle: FileHandle, identity: ClaimIdentity): Promise<number> {
  const next = (await readFields(handle)).counter + 1;
  await writeFields(handle, next, identity.hostname === HOSTNAME ? identity.pid : 0);
  return next;
}

async function writeFields(handle: FileHandle, counter: number, holderPid: number): Promise<void> {
  const text =
    String(counter).padStart(COUNTER_WIDTH - 1, '0') + '\n' + String(holderPid).padStart(PID_WIDTH, '0') + ' ' + HOST_TAG + '\n';
  await handle.write(text, 0, 'latin1');
}
