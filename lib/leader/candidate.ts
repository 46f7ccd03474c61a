import type { Logger } from '@nestjs/common';
import type { HeldLock, LockCallOptions, LockInfo } from '../held-lock.interface';
import { errorMessage, LockShuttingDownError, LockTimeoutError } from '../lock.errors';
import type { CampaignOptions, LeaderHandle, LeaderTerm } from './leader.interfaces';

/** What a candidate needs of `SpaceLockService`. */
export interface ElectionLocks {
  acquire(key: string, options?: LockCallOptions): Promise<HeldLock>;
  /** Still ours by our own count; ends the lease (aborting its signal) on the spot when its time ran out. */
  isHeldNow(lock: HeldLock): boolean;
  /** Resolves once the backend is initialised. */
  whenReady(): Promise<void>;
  inspect(key: string): Promise<LockInfo | null>;
}

/**
 * How long one wait for the leader's lock lasts before it is asked again. Not a poll: the wait
 * is woken by the leader's release (pushed by every backend) or at its lease's end.
 */
const CAMPAIGN_WAIT_MS = 60_000;
/** After a store failure, the next attempt waits this long. */
const RETRY_AFTER_FAILURE_MS = 1_000;
const NOT_LEADING = AbortSignal.abort(new Error('not the leader'));

type Callback = 'onElected' | 'onRevoked';

/**
 * One module instance's candidacy: wait for the name's lock, lead while the lease is kept (the
 * service's shared heartbeat), and campaign again when the term ends, until resigned.
 */
export class Candidate implements LeaderHandle {
  private lease?: HeldLock;
  private current?: { term: LeaderTerm; controller: AbortController; end(): void };
  private readonly listeners: CampaignOptions[] = [];
  private stopped = false;
  private readonly stop = new AbortController();

  constructor(
    private readonly locks: ElectionLocks,
    readonly name: string,
    private readonly key: string,
    private readonly ttlMs: number | undefined,
    private readonly logger: Logger,
  ) {
    void this.campaign().catch((error: unknown) => this.logger.error(`Campaign for "${name}" stopped: ${errorMessage(error)}`));
  }

  get resigned(): boolean {
    return this.stopped;
  }

  get isLeader(): boolean {
    return this.lease !== undefined && this.locks.isHeldNow(this.lease);
  }

  get term(): number | null {
    return this.isLeader ? (this.current?.term.term ?? null) : null;
  }

  get signal(): AbortSignal {
    return this.isLeader ? (this.current?.controller.signal ?? NOT_LEADING) : NOT_LEADING;
  }

  /** Adds callbacks; `onElected` is called at once when this candidate leads already. */
  listen(options: CampaignOptions): void {
    if (!options.onElected && !options.onRevoked) return;
    this.listeners.push(options);
    if (this.isLeader && this.current) this.call(options, 'onElected', this.current.term);
  }

  async resign(): Promise<void> {
    this.stopped = true;
    this.stop.abort();
    const lease = this.lease;
    this.current?.end();
    // The release wakes (Redis: hands the lease to) the first follower at once.
    if (lease) await lease.release().catch((error: unknown) => this.logger.warn(`Resigning "${this.name}": ${errorMessage(error)}`));
  }

  private async campaign(): Promise<void> {
    await this.locks.whenReady();
    while (!this.stopped) {
      let lease: HeldLock;
      try {
        // Leader names come from code, so the key is a bounded `lock.name` (at most 128 characters).
        lease = await this.locks.acquire(this.key, { waitMs: CAMPAIGN_WAIT_MS, ttlMs: this.ttlMs, name: this.key.slice(0, 128) });
      } catch (error) {
        if (this.stopped || error instanceof LockShuttingDownError) return;
        if (!(error instanceof LockTimeoutError)) {
          this.logger.warn(`Campaign for "${this.name}": ${errorMessage(error)}; trying again`);
          await pause(RETRY_AFTER_FAILURE_MS, this.stop.signal);
        }
        continue;
      }
      if (this.stopped) {
        await lease.release().catch(() => undefined);
        return;
      }
      await this.lead(lease);
    }
  }

  /** One term: until the lease is lost or we resign. */
  private lead(lease: HeldLock): Promise<void> {
    // Lost before its term began (an abort listener would never fire): campaign again.
    if (lease.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const controller = new AbortController();
      const term: LeaderTerm = { term: lease.fencingToken, signal: controller.signal };
      const end = (): void => {
        if (this.current?.controller !== controller) return;
        this.current = undefined;
        this.lease = undefined;
        lease.signal.removeEventListener('abort', end);
        controller.abort(lease.signal.aborted ? lease.signal.reason : new Error(`resigned leadership of "${this.name}"`));
        this.notify('onRevoked', term);
        resolve();
        // Off the hand-over's path: a resignation releases the lease right after this.
        setImmediate(() => this.logger.log(`No longer the leader of "${this.name}" (term ${term.term})`));
      };
      this.lease = lease;
      this.current = { term, controller, end };
      // A lost lease (taken over, timed out, shutdown) ends the term synchronously with its signal.
      lease.signal.addEventListener('abort', end, { once: true });
      this.notify('onElected', term);
      this.logger.log(`Leader of "${this.name}" (term ${term.term})`);
    });
  }

  private notify(which: Callback, term: LeaderTerm): void {
    // A snapshot: a listener added by a callback (listen() calls its onElected already) is not
    // reached by this round, so it never gets onElected twice or onRevoked without onElected.
    for (const listener of [...this.listeners]) this.call(listener, which, term);
  }

  private call(listener: CampaignOptions, which: Callback, term: LeaderTerm): void {
    try {
      listener[which]?.(term);
    } catch (error) {
      this.logger.error(`${which} of "${this.name}" threw: ${errorMessage(error)}`);
    }
  }
}

/** Resolves after `ms` or at `signal`'s abort; never keeps the process alive. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    timer.unref();
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
