import type { LockMode } from '../../lock-backend.interface';
import type { StoredRecord } from './holder-record-format';
import type { KeyFiles } from './lock-file-names';
import type { Claim } from './lock-mechanism';

/** One grant of this process on a lock file. */
export interface LocalHolder {
  token: string;
  record: StoredRecord;
  /** Its record file; absent when the record lives in the lock file (kernel exclusive grants). */
  recordPath?: string;
  /** The backend instance that granted it (for `close`). */
  owner: object;
}

/** This process's hold on one lock file, whichever module instance asked for it. */
export interface HeldFile {
  files: KeyFiles;
  mode: LockMode;
  claim: Claim;
  holders: Map<string, LocalHolder>;
}

/**
 * Per process, not per backend: several module instances (or a CLI and a server module in one
 * process) may lock the same file, and two descriptors of one process conflict under OFD locks
 * exactly like two processes. So the process takes each lock file once, counts its shared
 * holders, and answers its own conflicting requests as busy instead of deadlocking on itself.
 * Operations on one lock file run one at a time.
 */
class ProcessLockTable {
  private readonly held = new Map<string, HeldFile>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly releaseListeners = new Set<(anchorPath: string) => void>();

  get(anchorPath: string): HeldFile | undefined {
    return this.held.get(anchorPath);
  }

  set(entry: HeldFile): void {
    this.held.set(entry.files.anchorPath, entry);
  }

  delete(anchorPath: string): void {
    this.held.delete(anchorPath);
  }

  entries(): HeldFile[] {
    return [...this.held.values()];
  }

  /**
   * Run `task` after every earlier task on the same lock file has settled; at once when none is
   * pending (the common case), so a synchronous task also answers synchronously.
   */
  serialize<T>(anchorPath: string, task: () => T | Promise<T>): T | Promise<T> {
    const previous = this.queues.get(anchorPath);
    const run = previous ? previous.then(task, task) : task();
    if (!(run instanceof Promise)) return run;
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(anchorPath, tail);
    void tail.then(() => {
      if (this.queues.get(anchorPath) === tail) this.queues.delete(anchorPath);
    });
    return run;
  }

  /** Tell every backend of this process that a lock file was released here. */
  released(anchorPath: string): void {
    for (const listener of this.releaseListeners) listener(anchorPath);
  }

  onRelease(listener: (anchorPath: string) => void): () => void {
    this.releaseListeners.add(listener);
    return () => this.releaseListeners.delete(listener);
  }
}

// Kept on `globalThis` so two copies of this library in one process still share one table.
const TABLE = Symbol.for('nestjs-lock.file-backend.process-lock-table');
type WithTable = typeof globalThis & { [TABLE]?: ProcessLockTable };

export const processLockTable: ProcessLockTable = ((globalThis as WithTable)[TABLE] ??= new ProcessLockTable());
