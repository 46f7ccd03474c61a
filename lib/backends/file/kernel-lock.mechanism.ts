import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, writeSync } from 'node:fs';
import { LockBackendError } from '../../lock.errors';
import type { LockMode } from '../../lock-backend.interface';
import { parseRecord, serializeRecord, type FoundRecord, type StoredRecord } from './holder-record-format';
import { HOSTNAME, isPidAlive } from './pid-liveness';
import type { KeyFiles } from './lock-file-names';
import type { Claim, ClaimAttempt, LockMechanism } from './lock-mechanism';
import type { NativeFileLock } from './native-file-lock';

// libuv adds O_CLOEXEC itself, so children we spawn never inherit (and keep alive) the lock.
const OPEN_LOCK_FILE = constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW;
/**
 * Under `relatime` every grant's read, following the previous grant's write, would update the
 * access time and so dirty (journal) the inode once more per cycle. Only the file's owner may
 * ask for this (EPERM otherwise, e.g. a lock file another user created); undefined off Linux.
 */
const NO_ATIME = constants.O_NOATIME ?? 0;
// Non-blocking: opening a FIFO planted at a lock file's name for reading would wait for a writer.
const READ_LOCK_FILE = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/*
 * A lock file (directory format 2) is rewritten in place, never truncated or unlinked:
 *   bytes 0-18   the key's fencing counter, 19 decimal digits
 *   byte 20      'S' while shared holders may have record files in `<base>.holders/`, '-' once
 *                an exclusive holder has swept them (so exclusive grants skip that directory)
 *   bytes 22-40  the newest fencing token whose holder released it
 *   from 42      the last exclusive holder's record, one line of JSON (or an empty line); it
 *                names the holder while its fencing token is above the released one
 * Whatever follows that line is left from a longer earlier record and never read.
 *
 * A release unlocks first and then writes its token as released: that one write is also the
 * modification other processes' directory watches see, so the waiters it wakes find the lock
 * free. It may land after the next holder's grant (it is below that holder's token, so it
 * changes nothing) or, if the releasing process stalls between the two calls, even after a
 * later release (then that holder looks held until the next grant; a live pid is never
 * reported stale for it).
 */
const COUNTER_DIGITS = 19;
const FLAG_AT = 20;
const RELEASED_AT = 22;
const RECORD_AT = 42;
const NEWLINE = 0x0a;
const SHARED_RECORDS = 'S';
const NO_SHARED_RECORDS = '-';
/** A lock file swapped between our open and our lock is retried this often before giving up. */
const INODE_RETRIES = 3;
/**
 * Descriptors kept open for keys not held right now, so the next grant of a hot key skips
 * open, fstat and close. They hold no lock: an OFD lock belongs to the open file description
 * and is dropped by `unlock` before a descriptor is put back.
 */
const MAX_IDLE_FILES = 256;

interface OpenLockFile {
  readonly path: string;
  readonly fd: number;
  readonly ino: number;
  readonly dev: number;
}

interface LockFileHeader {
  counter: number;
  sharedRecords: boolean;
  released: number;
}

interface LockFileState {
  header: LockFileHeader;
  /** The last exclusive holder's record when its grant was not released, else `null`. */
  record: StoredRecord | null;
}

/** Reused for every read: a lock file is a header and one record, far below this. */
const scratch = Buffer.allocUnsafe(4096);

/**
 * Kernel-held locks on a lock file that is never unlinked: Linux open-file-description locks
 * (`fcntl F_OFD_SETLK`, whole file, shared or exclusive), dropped by the kernel when the last
 * descriptor of the holder closes, including on SIGKILL. The fencing counter and the exclusive
 * holder's record live in the lock file and change only under the lock. Every call is a few
 * synchronous system calls on a local file (microseconds each): going through the libuv pool
 * would cost more than the calls themselves.
 */
export class KernelLockMechanism implements LockMechanism {
  readonly kind = 'kernel';
  readonly keepsExclusiveRecord = true;
  private readonly idle = new Map<string, OpenLockFile>();
  private closed = false;

  constructor(readonly native: NativeFileLock) {}

  claim(files: KeyFiles, mode: LockMode, record: StoredRecord): ClaimAttempt {
    for (let attempt = 0; attempt < INODE_RETRIES; attempt++) {
      const file = this.take(files.anchorPath);
      try {
        if (!this.native.tryLock(file.fd, { shared: mode === 'shared' })) {
          const pid = holderPid(readState(file.fd).record);
          this.putBack(file);
          return { claim: null, retryAfterMs: null, holderPid: pid };
        }
        // This library never unlinks lock files, but a person or tool might: if the path now
        // names another file (or none), we locked an orphan that nobody else will ever see.
        if (!stillNamed(file)) {
          closeSync(file.fd);
          continue;
        }
        const { header, record: previous } = readState(file.fd);
        // An unreleased record of a live local pid is a release still writing its token.
        const leftover = previous && !(previous.hostname === HOSTNAME && isPidAlive(previous.pid)) ? previous : undefined;
        const scanRecords = header.sharedRecords;
        if (mode === 'exclusive') {
          header.counter += 1;
          record.fencingToken = header.counter;
          writeLockFile(file.fd, header, record);
        } else {
          record.fencingToken = header.counter;
          if (!header.sharedRecords || previous) {
            // Readers record themselves in files: say so before any is written. An unreleased
            // exclusive record is closed too: holding a shared lock proves its writer gone.
            header.sharedRecords = true;
            header.released = header.counter;
            writeLockFile(file.fd, header, null);
          }
        }
        return { claim: new KernelClaim(file, mode, header, this), leftover, scanRecords };
      } catch (error) {
        // Closing the only descriptor of this open file description drops any lock we took.
        closeSync(file.fd);
        throw error;
      }
    }
    throw new LockBackendError('file', `lock file ${files.anchorPath} keeps being replaced; is something deleting lock files?`);
  }

  lockRecord(anchorPath: string): FoundRecord | null {
    let fd: number;
    try {
      fd = openSync(anchorPath, READ_LOCK_FILE);
    } catch {
      return null; // never locked here, or not ours to read
    }
    try {
      const { record } = readState(fd);
      return record && { record, path: anchorPath, mtimeMs: 0 };
    } catch {
      return null; // not a lock file (a directory planted at its name)
    } finally {
      closeSync(fd);
    }
  }

  close(): void {
    this.closed = true;
    for (const file of this.idle.values()) closeSync(file.fd);
    this.idle.clear();
  }

  /** An idle descriptor of `path`, or a freshly opened and checked one. */
  private take(path: string): OpenLockFile {
    const file = this.idle.get(path);
    if (!file) return openLockFile(path);
    this.idle.delete(path);
    return file;
  }

  /** Keep an unlocked descriptor for the next grant (least recently used ones are closed). */
  putBack(file: OpenLockFile): void {
    if (this.closed || this.idle.has(file.path)) {
      closeSync(file.fd);
      return;
    }
    this.idle.set(file.path, file);
    if (this.idle.size <= MAX_IDLE_FILES) return;
    const [oldest] = this.idle.values();
    this.idle.delete(oldest.path);
    closeSync(oldest.fd);
  }
}

class KernelClaim implements Claim {
  private released = false;

  constructor(
    private readonly file: OpenLockFile,
    private readonly mode: LockMode,
    /** The lock file's header as this claim last wrote it; `counter` is the claim's fencing token. */
    private readonly header: LockFileHeader,
    private readonly mechanism: KernelLockMechanism,
  ) {}

  get fencingToken(): number {
    return this.header.counter;
  }

  renew(record: StoredRecord): number | null {
    if (this.released || this.mode !== 'exclusive') return null;
    // Exclusive: nobody else can have moved the counter since we did.
    this.header.counter += 1;
    record.fencingToken = this.header.counter;
    writeLockFile(this.file.fd, this.header, record);
    return this.header.counter;
  }

  rewrite(record: StoredRecord): void {
    if (!this.released && this.mode === 'exclusive') writeLockFile(this.file.fd, this.header, record);
  }

  recordsSwept(): void {
    if (this.released || this.mode !== 'exclusive') return;
    writeSync(this.file.fd, NO_SHARED_RECORDS, FLAG_AT, 'latin1');
    this.header.sharedRecords = false;
  }

  refresh(): boolean {
    return !this.released;
  }

  release(): boolean {
    if (this.released) return false;
    this.released = true;
    const { fd } = this.file;
    try {
      this.mechanism.native.unlock(fd);
    } catch (error) {
      // Closing the only descriptor of this open file description drops the lock for sure.
      closeSync(fd);
      throw error;
    }
    try {
      writeSync(fd, digits(this.header.counter), RELEASED_AT, 'latin1');
    } catch {
      // Waiters still re-check on their own; the next holder replaces the record.
    }
    this.mechanism.putBack(this.file);
    return true;
  }

  expiresInMs(): null {
    return null;
  }
}

function openLockFile(path: string): OpenLockFile {
  let fd: number;
  try {
    fd = openWithoutAtime(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new LockBackendError('file', `${path} is a symbolic link; refusing to follow it`, error);
    }
    throw error;
  }
  try {
    const info = fstatSync(fd);
    // A FIFO, device or hard link planted at our name must not be locked or written to.
    if (!info.isFile() || info.nlink > 1) {
      throw new LockBackendError('file', `${path} is not a plain lock file (planted link or special file?); refusing to use it`);
    }
    return { path, fd, ino: info.ino, dev: info.dev };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

function openWithoutAtime(path: string): number {
  try {
    return openSync(path, OPEN_LOCK_FILE | NO_ATIME, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM' || NO_ATIME === 0) throw error;
    return openSync(path, OPEN_LOCK_FILE, 0o600);
  }
}

/** The path still names the file we hold open, with no second link planted since we opened it. */
function stillNamed(file: OpenLockFile): boolean {
  const current = lstatSync(file.path, { throwIfNoEntry: false });
  return current !== undefined && current.ino === file.ino && current.dev === file.dev && current.nlink === 1;
}

function readState(fd: number): LockFileState {
  let buffer = scratch;
  let length = readSync(fd, buffer, 0, buffer.length, 0);
  if (length === buffer.length) {
    // A record longer than the scratch buffer (a very long key or owner): read all of it.
    buffer = Buffer.allocUnsafe(fstatSync(fd).size);
    length = readSync(fd, buffer, 0, buffer.length, 0);
  }
  const header = {
    counter: numberAt(buffer, 0, length),
    sharedRecords: length > FLAG_AT && buffer[FLAG_AT] !== NO_SHARED_RECORDS.charCodeAt(0),
    released: numberAt(buffer, RELEASED_AT, length),
  };
  // Most grants find the last one released: the record is parsed only when it may be a holder.
  if (header.released >= header.counter) return { header, record: null };
  const end = length > RECORD_AT ? buffer.indexOf(NEWLINE, RECORD_AT) : -1;
  // An unterminated line is a write we raced (we read without the lock when busy): no record.
  const record = end > RECORD_AT && end < length ? parseRecord(buffer.toString('utf8', RECORD_AT, end)) : null;
  return { header, record: record && record.fencingToken > header.released ? record : null };
}

/** The 19-digit field at `at`; 0 when missing or not all digits. Read from the bytes: no string per field. */
function numberAt(buffer: Buffer, at: number, length: number): number {
  if (length < at + COUNTER_DIGITS) return 0;
  let value = 0;
  for (let index = at; index < at + COUNTER_DIGITS; index++) {
    const digit = buffer[index] - 0x30;
    if (digit < 0 || digit > 9) return 0;
    value = value * 10 + digit;
  }
  return Number.isSafeInteger(value) ? value : 0;
}

function digits(value: number): string {
  return String(value).padStart(COUNTER_DIGITS, '0');
}

/** The header and the exclusive holder's record (or an empty line), in one write. */
function writeLockFile(fd: number, header: LockFileHeader, record: StoredRecord | null): void {
  const flag = header.sharedRecords ? SHARED_RECORDS : NO_SHARED_RECORDS;
  writeSync(fd, `${digits(header.counter)} ${flag} ${digits(header.released)}\n${record ? serializeRecord(record) : ''}\n`, 0, 'utf8');
}

/** The exclusive holder's pid when it runs on this host: waiters watch it die (SIGKILL makes no event). */
function holderPid(record: StoredRecord | null): number | undefined {
  return record && record.hostname === HOSTNAME && record.mode === 'exclusive' ? record.pid : undefined;
}
