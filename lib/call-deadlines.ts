import { performance } from 'node:perf_hooks';

/** A call being watched; `done` once it settled or expired. */
export interface WatchedCall {
  done: boolean;
  readonly deadline: number;
  readonly expire: () => void;
}

/**
 * Bounds every backend call with one shared timer instead of a timer per call. All calls get
 * the same timeout, so they expire in the order they started: a FIFO and one timer armed for
 * its oldest live entry is enough. Settled entries are skipped (and dropped from the head).
 */
export class CallDeadlines {
  private readonly queue: WatchedCall[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Calls neither settled nor expired. */
  private pending = 0;
  private onIdle: (() => void) | undefined;

  constructor(private readonly timeoutMs: number) {}

  watch(expire: () => void): WatchedCall {
    const call: WatchedCall = { done: false, deadline: performance.now() + this.timeoutMs, expire };
    this.queue.push(call);
    this.pending += 1;
    if (!this.timer) this.arm();
    return call;
  }

  /** The call answered in time. */
  settle(call: WatchedCall): void {
    call.done = true;
    this.finished();
    this.dropSettledHead();
  }

  /** Resolves once no watched call is pending (answered or expired). */
  async idle(): Promise<void> {
    while (this.pending > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
  }

  private finished(): void {
    this.pending -= 1;
    if (this.pending > 0 || !this.onIdle) return;
    const wake = this.onIdle;
    this.onIdle = undefined;
    wake();
  }

  private arm(): void {
    const oldest = this.queue[this.head];
    if (!oldest) return;
    // unref'd: the call's own I/O keeps the process alive while it matters.
    this.timer = setTimeout(() => this.expireDue(), Math.max(0, Math.ceil(oldest.deadline - performance.now())));
    this.timer.unref();
  }

  private expireDue(): void {
    this.timer = undefined;
    const now = performance.now();
    while (this.head < this.queue.length) {
      const call = this.queue[this.head];
      if (!call.done && call.deadline > now) break;
      this.head += 1;
      if (call.done) continue;
      call.done = true;
      call.expire();
      this.finished();
    }
    this.dropSettledHead();
    this.arm();
  }

  private dropSettledHead(): void {
    while (this.head < this.queue.length && this.queue[this.head].done) this.head += 1;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1_024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}
