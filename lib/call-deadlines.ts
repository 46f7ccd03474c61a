import { performance } from 'node:perf_hooks';

/** A call being watched: `expire()` runs once if it is still pending at its deadline. */
export interface WatchedCall {
  done: boolean;
  deadline: number;
  /** A late answer still has work to do (a grant to give back): shutdown waits for it, bounded. */
  readonly answersLate?: boolean;
  expire(): void;
}

/**
 * Bounds every backend call with one shared timer instead of a timer per call. All calls get
 * the same timeout, so they expire in the order they started: a FIFO and one timer armed for
 * its oldest live entry is enough. Settled entries are skipped (and dropped from the head).
 */
export class CallDeadlines {
  /** Slots behind `head` are cleared, so a passed call is never kept alive by the FIFO. */
  private readonly queue: (WatchedCall | undefined)[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Calls neither settled nor expired. */
  private pending = 0;
  /** Expired calls whose late answer (a grant to give back) has not come yet. */
  private unanswered = 0;
  private onIdle: (() => void) | undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Watch `call`, started at `startedAt` (monotonic; now by default). */
  watch<C extends WatchedCall>(call: C, startedAt = performance.now()): C {
    call.deadline = startedAt + this.timeoutMs;
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

  /**
   * Resolves once no watched call is pending (answered or expired) and no expired call that
   * may still answer with a grant is outstanding — waiting for those at most one more timeout.
   */
  async idle(): Promise<void> {
    const lateUntil = performance.now() + this.timeoutMs;
    for (;;) {
      const lateLeft = lateUntil - performance.now();
      if (this.pending === 0 && (this.unanswered === 0 || lateLeft <= 0)) return;
      await new Promise<void>((resolve) => {
        this.onIdle = resolve;
        if (this.pending === 0) setTimeout(resolve, Math.ceil(lateLeft)).unref();
      });
    }
  }

  /** An expired call that may answer late did answer (or fail) after all; its late handling has run. */
  lateAnswered(): void {
    this.unanswered -= 1;
    if (this.pending === 0) this.wake();
  }

  private finished(): void {
    this.pending -= 1;
    if (this.pending === 0) this.wake();
  }

  private wake(): void {
    const wake = this.onIdle;
    this.onIdle = undefined;
    wake?.();
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
      const call = this.queue[this.head] as WatchedCall;
      if (!call.done && call.deadline > now) break;
      this.queue[this.head++] = undefined;
      if (call.done) continue;
      call.done = true;
      if (call.answersLate) this.unanswered += 1;
      call.expire();
      this.finished();
    }
    this.dropSettledHead();
    this.arm();
  }

  private dropSettledHead(): void {
    while (this.head < this.queue.length && (this.queue[this.head] as WatchedCall).done) this.queue[this.head++] = undefined;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1_024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}

/**
 * How one kind of bounded call turns the store's answer, or its failure, into what the caller
 * sees. One object per kind serves all its calls; what differs per call travels as the call's
 * `subject`, so a call allocates no closures of its own.
 */
export interface BoundedCallKind<T, R, S> {
  /**
   * The caller's result from the store's answer. A throw is handled as a failure of the call
   * (`failed`), so anything done here must come after the last statement that may throw.
   */
  answered(value: T, call: BoundedCall<T, R, S>): R;
  /** The error the caller gets when the store failed with `error` (or `answered` threw), or gave no answer in time. */
  failed(call: BoundedCall<T, R, S>, error: unknown, timedOut: boolean): unknown;
  /** The store answered after the caller was given its timeout (a grant nobody will hold). */
  answeredLate?(value: T, call: BoundedCall<T, R, S>): void;
}

let capturedResolve: (value: unknown) => void;
let capturedReject: (error: unknown) => void;
// One executor for every call's promise: a closure per call would be one more allocation each.
function captureResolvers(resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * One store call, settled by its own answer or by its deadline, whichever comes first.
 * `startedAt` (monotonic) is when it was sent: a lease it grants is measured from there.
 */
export class BoundedCall<T, R, S> implements WatchedCall {
  done = false;
  deadline = 0;
  readonly startedAt = performance.now();
  readonly promise: Promise<R>;
  // Dropped once settled: the FIFO may hold a settled call a little longer.
  private resolve: ((value: R) => void) | undefined;
  private reject: ((error: unknown) => void) | undefined;
  private deadlines: CallDeadlines | null = null;

  get answersLate(): boolean {
    return this.kind.answeredLate !== undefined;
  }

  constructor(
    private readonly kind: BoundedCallKind<T, R, S>,
    readonly operation: string,
    readonly subject: S,
  ) {
    this.promise = new Promise<R>(captureResolvers as (resolve: (value: R) => void, reject: (error: unknown) => void) => void);
    this.resolve = capturedResolve;
    this.reject = capturedReject;
  }

  /** Settle with `pending`, unless `deadlines` (none for in-process stores) expires this call first. */
  follow(pending: Promise<T>, deadlines: CallDeadlines | null): Promise<R> {
    if (deadlines) {
      deadlines.watch(this, this.startedAt);
      this.deadlines = deadlines;
    }
    pending.then(
      (value) => this.answer(value),
      (error: unknown) => this.fail(error),
    );
    return this.promise;
  }

  expire(): void {
    const reject = this.reject as (error: unknown) => void;
    this.resolve = this.reject = undefined;
    reject(this.kind.failed(this, undefined, true));
  }

  private answer(value: T): void {
    if (this.done) {
      if (!this.kind.answeredLate) return;
      try {
        this.kind.answeredLate(value, this);
      } finally {
        this.deadlines?.lateAnswered();
      }
      return;
    }
    const resolve = this.resolve as (value: R) => void;
    const reject = this.reject as (error: unknown) => void;
    this.settle();
    let result: R;
    try {
      result = this.kind.answered(value, this);
    } catch (error) {
      reject(this.kind.failed(this, error, false));
      return;
    }
    resolve(result);
  }

  private fail(error: unknown): void {
    if (this.done) {
      if (this.kind.answeredLate) this.deadlines?.lateAnswered();
      return;
    }
    const reject = this.reject as (error: unknown) => void;
    this.settle();
    reject(this.kind.failed(this, error, false));
  }

  private settle(): void {
    this.resolve = this.reject = undefined;
    if (this.deadlines) this.deadlines.settle(this);
    else this.done = true;
  }
}
