import type { LockRecord, LockRequest } from '../../lock-backend.interface';

/** One grant on a key of the memory store. */
export interface MemoryLease {
  token: string;
  /** Monotonic clock (`performance.now()`). */
  expiresAt: number;
  record: LockRecord;
}

/** A waiter that passed a queue token: its place in line, kept until it gives up or is let in. */
interface QueuedRequest {
  request: LockRequest;
  /** The waiter stops waiting by then; a grace period later its place is dropped even if it never said so. */
  expiresAt: number;
}

/** How long a queued place outlives its waiter's `waitMs`: room for its last call (`leaveQueue`). */
const QUEUE_GRACE_MS = 1_000;

/**
 * Who holds one key of the memory store and who waits for it, and the one rule that lets
 * them in: readers together, a writer alone, at most `limit` permits, and in order — nobody
 * gets in ahead of a waiter queued before it (so a queued writer is not starved by readers
 * that keep coming), and whenever holders leave, the head of the queue is let in, as many as
 * fit (readers at the head together, one permit each).
 */
export class MemoryKeyState {
  /** Oldest first. */
  readonly holders: MemoryLease[] = [];
  private readonly queue: QueuedRequest[] = [];

  /** Nobody holds or waits: the store may forget the key. */
  get idle(): boolean {
    return this.holders.length === 0 && this.queue.length === 0;
  }

  /** Waiters in line. */
  get queued(): number {
    return this.queue.length;
  }

  holder(token: string): MemoryLease | undefined {
    return this.holders.find((lease) => lease.token === token);
  }

  /** The limit the holders were granted with when `request` asks for another one (`1`: plain), else `null`. */
  limitInUse(request: LockRequest): number | null {
    if (this.holders.length === 0) return null;
    const inUse = this.holders[0].record.limit ?? 1;
    return inUse === (request.limit ?? 1) ? null : inUse;
  }

  /** May `request` join the holders now: it fits beside them and nobody queued is ahead of it. */
  admits(request: LockRequest): boolean {
    const ahead = this.queue.length > 0 && this.queue[0].request.token !== request.token;
    return !ahead && this.fits(request);
  }

  /** Keep `request`'s place in line (once; later attempts of the same wait keep the first place). */
  enqueue(request: LockRequest, now: number): void {
    if (!request.queue) return;
    const expiresAt = now + request.queue.waitMs + QUEUE_GRACE_MS;
    const queued = this.queue.find((entry) => entry.request.token === request.token);
    if (queued) queued.expiresAt = expiresAt;
    else this.queue.push({ request, expiresAt });
  }

  /** Take `token` out of the line; `true` when it was in it. */
  dequeue(token: string): boolean {
    const index = this.queue.findIndex((entry) => entry.request.token === token);
    if (index < 0) return false;
    this.queue.splice(index, 1);
    return true;
  }

  /** Drop `token`'s grant; `true` when it held the key. */
  removeHolder(token: string): boolean {
    const index = this.holders.findIndex((lease) => lease.token === token);
    if (index < 0) return false;
    this.holders.splice(index, 1);
    return true;
  }

  /** Forget leases that ran out and places nobody waits in any more; `true` when a holder left. */
  prune(now: number): boolean {
    const before = this.holders.length;
    removeWhere(this.holders, (lease) => lease.expiresAt <= now);
    removeWhere(this.queue, (entry) => entry.expiresAt <= now);
    return this.holders.length < before;
  }

  /** Let the head of the queue in, as many as fit, each with the lease `grant` mints; how many got in. */
  promote(grant: (request: LockRequest) => MemoryLease): number {
    let promoted = 0;
    while (this.queue.length > 0 && this.limitInUse(this.queue[0].request) === null && this.fits(this.queue[0].request)) {
      this.holders.push(grant((this.queue.shift() as QueuedRequest).request));
      promoted += 1;
    }
    return promoted;
  }

  /** The earliest-ending holder's remaining lease: when a place may free up. */
  retryAfterMs(now: number): number | null {
    if (this.holders.length === 0) return null;
    let earliest = this.holders[0].expiresAt;
    for (const lease of this.holders) earliest = Math.min(earliest, lease.expiresAt);
    return Math.max(0, Math.ceil(earliest - now));
  }

  /** Does `request` fit beside the current holders (of the same limit)? */
  private fits(request: LockRequest): boolean {
    if (this.holders.length === 0) return true;
    const limit = request.limit ?? 1;
    if (limit > 1) return this.holders.length < limit;
    // Plain holders are one writer or only readers.
    return request.mode === 'shared' && this.holders[0].record.mode === 'shared';
  }
}

function removeWhere<T>(list: T[], drop: (item: T) => boolean): void {
  let kept = 0;
  for (const item of list) if (!drop(item)) list[kept++] = item;
  list.length = kept;
}
