/** What `campaign` calls as leadership comes and goes. */
export interface CampaignOptions {
  /** Called when this candidate becomes the leader; `signal` aborts when the term ends. */
  onElected?: (term: LeaderTerm) => void;
  /** Called when a term of this candidate ended (lost lease, resignation, shutdown). */
  onRevoked?: (term: LeaderTerm) => void;
  /** Lease length of the leader's lock; default the module's `ttlMs`. A crashed leader is replaced within it. */
  ttlMs?: number;
}

export interface LeaderTerm {
  /** The fencing token of the leader's lease: strictly increasing across terms and replicas. */
  term: number;
  /** Aborts when this term ends, before the lease could have expired in the store. */
  signal: AbortSignal;
}

/** One module instance's candidacy for a name (see `SpaceLockService.campaign`). */
export interface LeaderHandle {
  readonly name: string;
  /**
   * This replica leads now. Read at call time: a lease whose locally counted time ran out (a
   * paused process) reads `false` and ends the term on the spot.
   */
  readonly isLeader: boolean;
  /** The current term's fencing token, or `null` while not leading. */
  readonly term: number | null;
  /** The current term's signal; an aborted one while not leading. */
  readonly signal: AbortSignal;
  /** Step down (releasing the lease, so a follower takes over at once) and stop campaigning. */
  resign(): Promise<void>;
}

/** Who leads a name, as the store records it. */
export interface LeaderRecord {
  name: string;
  /** The leader's `ownerId`. */
  owner: string;
  instanceId: string;
  hostname: string;
  pid: number;
  /** Epoch milliseconds the term began. */
  since: number;
  term: number;
  /** The leader is this module instance. */
  local: boolean;
}
