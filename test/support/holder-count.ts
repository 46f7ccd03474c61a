import type { LockMode } from '../../lib';

/**
 * A resource that counts who is inside it, as the holders of a lock report entering and
 * leaving: readers beside a writer, two writers, or more permits than `limit` are violations.
 * Everything is counted at the moment it happens, so a test decides by these counts, not by
 * how long it slept.
 */
export class HolderCount {
  readers = 0;
  writers = 0;
  maxReaders = 0;
  maxInside = 0;
  /** Entries, by mode. */
  entered = { shared: 0, exclusive: 0 };
  violations: string[] = [];
  private readonly watchers = new Set<() => void>();

  /** `limit`: how many exclusive holders may be inside at once (a semaphore); 1 for a plain lock. */
  constructor(private readonly limit = 1) {}

  get inside(): number {
    return this.readers + this.writers;
  }

  enter(mode: LockMode, who = '?'): void {
    if (mode === 'shared') {
      this.readers += 1;
      if (this.writers > 0) this.violations.push(`reader ${who} beside ${this.writers} writer(s)`);
    } else {
      this.writers += 1;
      if (this.readers > 0) this.violations.push(`writer ${who} beside ${this.readers} reader(s)`);
      if (this.writers > this.limit) this.violations.push(`writer ${who}: ${this.writers} inside, limit ${this.limit}`);
    }
    this.entered[mode] += 1;
    this.maxReaders = Math.max(this.maxReaders, this.readers);
    this.maxInside = Math.max(this.maxInside, this.inside);
    this.changed();
  }

  exit(mode: LockMode): void {
    if (mode === 'shared') this.readers -= 1;
    else this.writers -= 1;
    this.changed();
  }

  /** Resolves once `condition` holds (checked at every entry and exit), or rejects after `timeoutMs`. */
  when(condition: (count: this) => boolean, timeoutMs = 10_000): Promise<void> {
    if (condition(this)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.watchers.delete(check);
        reject(new Error(`HolderCount: condition not met within ${timeoutMs} ms (readers ${this.readers}, writers ${this.writers})`));
      }, timeoutMs);
      const check = (): void => {
        if (!condition(this)) return;
        clearTimeout(timer);
        this.watchers.delete(check);
        resolve();
      };
      this.watchers.add(check);
    });
  }

  private changed(): void {
    for (const check of [...this.watchers]) check();
  }
}

/** A barrier a holder waits at until the test opens it. */
export class Gate {
  private opened!: () => void;
  readonly open = new Promise<void>((resolve) => (this.opened = resolve));
  release(): void {
    this.opened();
  }
}

/** A few turns of the event loop: lets other holders and the store move while one is inside. */
export async function yieldTurns(turns = 3): Promise<void> {
  for (let turn = 0; turn < turns; turn += 1) await new Promise((resolve) => setImmediate(resolve));
}
