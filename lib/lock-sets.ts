import { performance } from 'node:perf_hooks';
import type { LockCallOptions, LockSetKey } from './held-lock.interface';
import type { HeldLeases } from './held-leases';
import { Lease } from './lease';
import type { LocalKeyTable } from './local-key-table';
import type { LockAcquirer } from './lock-acquirer';
import type { Attempt, CallOptions, Miss, SetAttempt } from './lock-attempt';
import type { AcquireAllOutcome, LockBackend, LockRequest } from './lock-backend.interface';
import { LockLimitMismatchError, LockOptionsError } from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { assertValidKey, resolveCallOptions } from './lock-options.validation';
import type { StoreCalls } from './store-calls';
import type { AttemptWatch, LockEvents } from './events/lock-events';

/** One key of a set (without `keyPrefix`) and the call options it is taken with (its own mode or limit). */
export interface SetMember {
  key: string;
  options: LockCallOptions | undefined;
}

/**
 * Lock sets: several keys, all or none, always in sorted order so overlapping sets never
 * deadlock; each key in its own mode or limit when the caller names one; with a backend that
 * takes a set at once (`tryAcquireAll`), one store call for it.
 */
export class LockSets {
  constructor(
    private readonly backend: LockBackend,
    private readonly options: ResolvedLockModuleOptions,
    private readonly calls: StoreCalls,
    private readonly table: LocalKeyTable,
    private readonly leases: HeldLeases,
    private readonly acquirer: LockAcquirer,
    private readonly events: LockEvents,
  ) {}

  /**
   * Distinct valid keys, sorted (the order every set is taken in), each with the set's call
   * options and its own `mode` / `limit` over them. A key named twice must be named alike.
   */
  members(keys: readonly LockSetKey[], given: LockCallOptions | undefined): SetMember[] {
    if (!Array.isArray(keys) || keys.length === 0) throw new LockOptionsError('keys must be a non-empty array');
    const byKey = new Map<string, SetMember>();
    for (const entry of keys) {
      const member = typeof entry === 'string' ? { key: entry, options: given } : ownOptions(entry, given);
      assertValidKey(member.key);
      const seen = byKey.get(member.key);
      if (!seen) byKey.set(member.key, member);
      else if (!sameKind(seen.options, member.options)) {
        throw new LockOptionsError(`Key "${member.key}" is named twice in a lock set, with different mode or limit`);
      }
    }
    return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * All of `keys` (sorted, unique) or none, waiting up to `waitMs` in total. With a backend
   * that takes sets at once (`tryAcquireAll`): this process's slots first, in sorted order,
   * then one store call for the whole set, asked again as keys are released. Otherwise key by
   * key, in sorted order, holding the earlier keys while waiting for a later one.
   */
  async attemptSet(members: readonly SetMember[]): Promise<SetAttempt> {
    if (!this.backend.tryAcquireAll || members.length === 1) return this.attemptEach(members);
    const options = members.map((member) => this.acquirer.callOptions(member.options));
    if (!this.events.active) return this.attemptAtOnce(members, options);
    const watch = this.events.watch(
      members.map((member) => member.key),
      options[0],
    );
    return watch.follow(this.attemptAtOnce(members, options, watch));
  }

  /** `attemptSet` with a backend that takes sets in one call. */
  private async attemptAtOnce(members: readonly SetMember[], options: readonly CallOptions[], watch?: AttemptWatch): Promise<SetAttempt> {
    const keys = members.map((member) => member.key);
    // One wait for the whole set: every member has the set's waitMs.
    const giveUpAt = performance.now() + options[0].waitMs;
    const storeKeys = keys.map((key) => this.acquirer.storeKey(key));
    const occupied: string[] = [];
    try {
      for (const [index, storeKey] of storeKeys.entries()) {
        const local = this.table.get(storeKey);
        const own = options[index];
        if (local && !this.table.admits(local, own)) {
          const limitInUse = this.table.limitInUse(local, own.limit);
          if (limitInUse !== null) throw new LockLimitMismatchError(keys[index], own.limit, limitInUse);
          watch?.contended(own.waitMs > 0);
          const waitMs = Math.max(0, Math.ceil(giveUpAt - performance.now()));
          const turn = await this.table.waitLocally(local, { ...own, waitMs }, true);
          // A set waiter is never handed a lease: `turn` is the slot or a miss.
          if (turn !== 'slot') {
            this.table.vacateAll(occupied);
            return { missed: [{ key: keys[index], ...(turn as Miss) }] };
          }
        } else {
          this.table.occupy(storeKey, own);
        }
        occupied.push(storeKey);
      }
      for (;;) {
        const requests = storeKeys.map((storeKey, index) => this.leases.request(storeKey, options[index]));
        const sentAt = performance.now();
        const outcome = await this.askStoreForSet(requests);
        if (outcome.acquired) {
          this.leases.refuseIfClosing(outcome, requests);
          return { leases: requests.map((request, index) => this.leases.grant(keys[index], request, outcome.fencingTokens[index], sentAt)) };
        }
        const [first] = outcome.held;
        const mismatch = outcome.held.find((held) => held.limitInUse !== undefined);
        if (mismatch) throw this.acquirer.limitMismatch(requests[storeKeys.indexOf(mismatch.key)], mismatch.limitInUse as number);
        watch?.contended(options[0].waitMs > 0);
        const woken = await this.acquirer.waitForStore(first.key, first.retryAfterMs, giveUpAt);
        // Woken by shutdown: an error, as for local waiters, not a busy miss.
        this.acquirer.assertOpen();
        if (woken === 'gave-up') {
          this.table.vacateAll(occupied);
          const prefix = this.options.keyPrefix.length;
          return { missed: outcome.held.map(({ key, retryAfterMs }) => ({ key: key.slice(prefix), skipped: 'lock-held', retryAfterMs })) };
        }
      }
    } catch (error) {
      this.table.vacateAll(occupied);
      throw error;
    }
  }

  /** `attemptSet` for backends without `tryAcquireAll`. */
  private async attemptEach(members: readonly SetMember[]): Promise<SetAttempt> {
    // One wait for the whole set: every member has the set's waitMs.
    const waitMs = resolveCallOptions(members[0].options, this.options).waitMs;
    const giveUpAt = performance.now() + waitMs;
    const leases: Lease[] = [];
    try {
      for (const { key, options } of members) {
        const remaining = Math.max(0, Math.floor(giveUpAt - performance.now()));
        const attempt = await this.acquirer.attempt(key, { ...options, waitMs: Math.min(waitMs, remaining) });
        if (!(attempt instanceof Lease)) {
          await this.leases.releaseAll(leases);
          return { missed: [{ key, ...attempt }] };
        }
        leases.push(attempt);
      }
      return { leases };
    } catch (error) {
      await this.leases.releaseAll(leases);
      throw error;
    }
  }

  /** One `tryAcquireAll` call for a whole set. */
  private askStoreForSet(requests: readonly LockRequest[]): Promise<AcquireAllOutcome> {
    const tryAcquireAll = this.backend.tryAcquireAll?.bind(this.backend) as NonNullable<LockBackend['tryAcquireAll']>;
    return this.calls.call('tryAcquireAll', () => tryAcquireAll(requests), (late) => this.leases.giveBack(late, requests));
  }

  /**
   * One try per key (sorted, no wait), each on its own: what could be taken stays held. On a
   * throw, what was taken is released.
   */
  async tryEach(members: readonly SetMember[]): Promise<[string, Attempt][]> {
    const attempts: [string, Attempt][] = [];
    try {
      for (const { key, options } of members) attempts.push([key, await this.acquirer.attempt(key, { ...options, waitMs: 0 })]);
    } catch (error) {
      await this.leases.releaseAll(attempts.flatMap(([, attempt]) => (attempt instanceof Lease ? [attempt] : [])));
      throw error;
    }
    return attempts;
  }
}

/** A set's key named with its own `mode` / `limit`: those over the set's call options. */
function ownOptions(entry: Exclude<LockSetKey, string>, given: LockCallOptions | undefined): SetMember {
  if (typeof entry !== 'object' || entry === null) throw new LockOptionsError('a lock set key must be a string or { key, mode?, limit? }');
  const options: LockCallOptions = { ...given };
  if (entry.mode !== undefined) options.mode = entry.mode;
  if (entry.limit !== undefined) options.limit = entry.limit;
  return { key: entry.key, options };
}

/** Do two members take their key the same way (mode and limit)? */
function sameKind(a: LockCallOptions | undefined, b: LockCallOptions | undefined): boolean {
  return (a?.mode ?? 'exclusive') === (b?.mode ?? 'exclusive') && (a?.limit ?? 1) === (b?.limit ?? 1);
}
