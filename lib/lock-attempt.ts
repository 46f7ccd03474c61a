import type { LockCallOptions, SkipReason } from './held-lock.interface';
import type { Lease } from './lease';

/** Call options after validation, defaults filled in. */
export type CallOptions = Required<LockCallOptions>;

/** An attempt that did not get the lock: why, and how long the holder's lease still runs. */
export interface Miss {
  skipped: SkipReason;
  retryAfterMs: number | null;
}

export type Attempt = Lease | Miss;

/** A lock set: every lease, or the keys (without `keyPrefix`) that stayed taken, first first, and nothing held. */
export type SetAttempt = { leases: Lease[] } | { missed: (Miss & { key: string })[] };
