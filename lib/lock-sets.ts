import { performance } from 'node:perf_hooks';
import type { LockCallOptions } from './held-lock.interface';
import type { HeldLeases } from './held-leases';
import { Lease } from './lease';
import type { LocalKeyTable } from './local-key-table';
import type { LockAcquirer } from './lock-acquirer';
import type { Attempt, CallOptions, Miss, SetAttempt } from './lock-attempt';
import type { AcquireAllOutcome, LockBackend, LockRequest } from './lock-backend.interface';
import { LockOptionsError } from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { assertValidKey, resolveCallOptions } from './lock-options.validation';
import type { StoreCalls } from './store-calls';
import type { AttemptWatch, LockEvents } from './events/lock-events';

/**
 * Lock sets: several keys, all or none, always in sorted order so overlapping sets never
 * deadlock; with a backend that takes a set at once (`tryAcquireAll`), one store call for it.
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

  /** Distinct valid keys, sorted: the order every set is taken in. */
  sortedKeys(keys: readonly string[]): string[] {
    if (!Array.isArray(keys) || keys.length === 0) throw new LockOptionsError('keys must be a non-empty array');
    keys.forEach((key) => assertValidKey(key));
    return [...new Set(keys)].sort();
  }

  /**
   * All of `keys` (sorted, unique) or none, waiting up to `waitMs` in total. With a backend
   * that takes sets at once (`tryAcquireAll`): this process's slots first, in sorted order,
   * then one store call for the whole set, asked again as keys are released. Otherwise key by
   * key, in sorted order, holding the earlier keys while waiting for a later one.
   */
  async attemptSet(keys: readonly string[], given: LockCallOptions | undefined): Promise<SetAttempt> {
    if (!this.backend.tryAcquireAll || keys.length === 1) return this.attemptEach(keys, given);
    const options = this.acquirer.callOptions(given);
    if (!this.events.active) return this.attemptAtOnce(keys, options);
    const watch = this.events.watch(keys, options);
    return watch.follow(this.attemptAtOnce(keys, options, watch));
  }

  /** `attemptSet` with a backend that takes sets in one call. */
  private async attemptAtOnce(keys: readonly string[], options: CallOptions, watch?: AttemptWatch): Promise<SetAttempt> {
    const giveUpAt = performance.now() + options.waitMs;
    const storeKeys = keys.map((key) => this.acquirer.storeKey(key));
    const occupied: string[] = [];
    try {
      for (const [index, storeKey] of storeKeys.entries()) {
        const local = this.table.get(storeKey);
        if (local && !this.table.admits(local, options.mode)) {
          watch?.contended(options.waitMs > 0);
          const waitMs = Math.max(0, Math.ceil(giveUpAt - performance.now()));
          const turn = await this.table.waitLocally(local, { ...options, waitMs }, true);
          // A set waiter is never handed a lease: `turn` is the slot or a miss.
          if (turn !== 'slot') {
            this.table.vacateAll(occupied);
            return { missed: [{ key: keys[index], ...(turn as Miss) }] };
          }
        } else {
          this.table.occupy(storeKey, options.mode);
        }
        occupied.push(storeKey);
      }
      for (;;) {
        const requests = storeKeys.map((storeKey) => this.leases.request(storeKey, options));
        const sentAt = performance.now();
        const outcome = await this.askStoreForSet(requests);
        if (outcome.acquired) {
          this.leases.refuseIfClosing(outcome, requests);
          return { leases: requests.map((request, index) => this.leases.grant(keys[index], request, outcome.fencingTokens[index], sentAt)) };
        }
        const [first] = outcome.held;
        watch?.contended(options.waitMs > 0);
        if ((await this.acquirer.waitForStore(first.key, first.retryAfterMs, giveUpAt)) === 'gave-up') {
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
  private async attemptEach(keys: readonly string[], given: LockCallOptions | undefined): Promise<SetAttempt> {
    const waitMs = resolveCallOptions(given, this.options).waitMs;
    const giveUpAt = performance.now() + waitMs;
    const leases: Lease[] = [];
    try {
      for (const key of keys) {
        const remaining = Math.max(0, Math.floor(giveUpAt - performance.now()));
        const attempt = await this.acquirer.attempt(key, { ...given, waitMs: Math.min(waitMs, remaining) });
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
  async tryEach(sorted: readonly string[], options: LockCallOptions | undefined): Promise<[string, Attempt][]> {
    const attempts: [string, Attempt][] = [];
    try {
      for (const key of sorted) attempts.push([key, await this.acquirer.attempt(key, { ...options, waitMs: 0 })]);
    } catch (error) {
      await this.leases.releaseAll(attempts.flatMap(([, attempt]) => (attempt instanceof Lease ? [attempt] : [])));
      throw error;
    }
    return attempts;
  }
}
