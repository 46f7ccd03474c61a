import { watch, type FSWatcher } from 'node:fs';
import { isPidAlive } from './pid-liveness';

/**
 * How often a waiter checks that the holder's pid still exists: a `kill(pid, 0)` system call,
 * no file access, so a SIGKILLed holder is noticed within a few milliseconds.
 */
const PID_CHECK_MS = 3;
/** Anchors tracked at most; past it the counts restart (a waiter then wakes once for nothing). */
const MAX_TRACKED = 10_000;

/**
 * Wakes waiters of this process when a lock of the directory may have been released. Releases
 * modify the lock's anchor (a file or directory right in `dir`), which a directory watch
 * (inotify on Linux) reports within a millisecond or so; a bounded fallback timer covers what no
 * event announces: a holder killed with SIGKILL, or a platform where watching fails.
 */
export class ReleaseWatcher {
  private watcher: FSWatcher | undefined;
  private failed = false;
  /** After `close`: later waits fall back to the timer instead of opening a watch nothing would close. */
  private closed = false;
  /** Events seen per anchor name, so a release between a failed attempt and the wait is not missed. */
  private readonly seen = new Map<string, number>();
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Last holder pid per anchor seen dead, kept small: at most one per contended anchor. */
  private readonly deadHolders = new Map<string, number>();

  constructor(
    private readonly dir: string,
    private readonly recheckMs: number,
    private readonly onError: (error: Error) => void,
  ) {}

  /** How many events `anchor` has had so far. */
  mark(anchor: string): number {
    const seen = this.seen.get(anchor);
    if (seen !== undefined) return seen;
    if (this.seen.size >= MAX_TRACKED) this.seen.clear();
    this.seen.set(anchor, 0);
    return 0;
  }

  /** Something happened to `anchor` (a watch event, or a release of this process): wake its waiters. */
  notify(anchor: string): void {
    const seen = this.seen.get(anchor);
    // Only anchors this process asked about are counted: the directory's other traffic must not grow the map.
    if (seen !== undefined) this.seen.set(anchor, seen + 1);
    this.deadHolders.delete(anchor);
    const waiters = this.waiters.get(anchor);
    if (!waiters) return;
    this.waiters.delete(anchor);
    for (const wake of waiters) wake();
  }

  /**
   * Resolve on the next event for `anchor` after `since` (at once if one already came), when
   * `holderPid` dies, after `min(timeoutMs, recheckMs)`, or on abort. Leaves no timer or
   * listener behind.
   */
  wait(anchor: string, since: number, timeoutMs: number, signal: AbortSignal, holderPid?: number): Promise<void> {
    // The watch starts with the first wait, so a process that never waits never pays for the
    // events of its own writes; a release before it started went unseen, so that wait returns
    // at once and the caller tries again, now watched.
    if (this.start() || (this.seen.get(anchor) ?? 0) !== since || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      // A dead pid still named after our retry is a leftover, not the holder: watch it only once.
      const watchPid = holderPid !== undefined && this.deadHolders.get(anchor) !== holderPid;
      const pidCheck = watchPid
        ? setInterval(() => {
            if (isPidAlive(holderPid)) return;
            this.deadHolders.set(anchor, holderPid);
            done();
          }, PID_CHECK_MS)
        : undefined;
      pidCheck?.unref();
      const done = (): void => {
        clearInterval(pidCheck);
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        const set = this.waiters.get(anchor);
        set?.delete(done);
        if (set?.size === 0) this.waiters.delete(anchor);
        resolve();
      };
      // Kept referenced: a script whose only work is waiting for another process's release must
      // not exit mid-wait (the release arrives through the unreferenced watch).
      const timer = setTimeout(done, Math.max(1, Math.min(timeoutMs, this.recheckMs)));
      signal.addEventListener('abort', done, { once: true });
      let set = this.waiters.get(anchor);
      if (!set) this.waiters.set(anchor, (set = new Set()));
      set.add(done);
    });
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    for (const set of this.waiters.values()) for (const wake of [...set]) wake();
    this.waiters.clear();
  }

  /** `true` when the watch began just now. */
  private start(): boolean {
    if (this.watcher || this.failed || this.closed) return false;
    try {
      // Not persistent: a watch must never keep the process alive on its own.
      this.watcher = watch(this.dir, { persistent: false }, (_event, filename) => {
        if (typeof filename === 'string' && (this.seen.has(filename) || this.waiters.has(filename))) this.notify(filename);
      });
      this.watcher.on('error', (error) => this.fail(error));
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
    }
    return true;
  }

  private fail(error: Error): void {
    this.watcher?.close();
    this.watcher = undefined;
    // The fallback timer alone still works, only slower to notice releases.
    this.failed = true;
    this.onError(error);
  }
}
