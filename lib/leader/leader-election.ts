import type { Logger } from '@nestjs/common';
import { assertDuration } from '../lock-options.validation';
import { LockOptionsError } from '../lock.errors';
import { Candidate, type ElectionLocks } from './candidate';
import type { CampaignOptions, LeaderHandle, LeaderRecord } from './leader.interfaces';
import { leaderKey } from './leader-key';

/**
 * The candidacies of one module instance, one per name. Leadership is an exclusive lock on
 * `leader:<name>`: its fencing token is the term, the service's heartbeat keeps it, the backend's
 * release wake-up (Redis: its waiter queue) hands it over.
 */
export class LeaderElection {
  private readonly candidates = new Map<string, Candidate>();

  constructor(
    private readonly locks: ElectionLocks,
    private readonly logger: Logger,
  ) {}

  /**
   * Campaign for `name` until resigned or the module shuts down. A second call for a name this
   * instance campaigns for already returns the same handle (with the new callbacks added).
   */
  campaign(name: string, options: CampaignOptions = {}): LeaderHandle {
    const key = leaderKey(name);
    validate(options);
    let candidate = this.candidates.get(name);
    if (!candidate || candidate.resigned) {
      candidate = new Candidate(this.locks, name, key, options.ttlMs, this.logger);
      this.candidates.set(name, candidate);
    }
    candidate.listen(options);
    return candidate;
  }

  /** This instance's candidacy for `name`, if any. */
  candidate(name: string): LeaderHandle | undefined {
    return this.candidates.get(name);
  }

  async leader(name: string): Promise<LeaderRecord | null> {
    const holder = await this.locks.inspect(leaderKey(name));
    if (!holder) return null;
    return {
      name,
      owner: holder.ownerId,
      instanceId: holder.instanceId,
      hostname: holder.hostname,
      pid: holder.pid,
      since: holder.acquiredAt,
      term: holder.fencingToken,
      local: holder.local,
    };
  }

  /** At shutdown, before leases are released: leaders step down so followers take over at once. */
  async resignAll(): Promise<void> {
    await Promise.all([...this.candidates.values()].map((candidate) => candidate.resign()));
  }
}

function validate(options: CampaignOptions): void {
  if (typeof options !== 'object' || options === null) throw new LockOptionsError('campaign options must be an object');
  for (const callback of ['onElected', 'onRevoked'] as const) {
    if (options[callback] !== undefined && typeof options[callback] !== 'function') {
      throw new LockOptionsError(`campaign ${callback} must be a function`);
    }
  }
  if (options.ttlMs !== undefined) assertDuration('ttlMs', options.ttlMs);
}
