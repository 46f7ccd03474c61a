import { Logger } from '@nestjs/common';
import type { ForceReleaseOptions, HeldLockSummary, ListLocksOptions, LockInfo, LockWaiters } from './held-lock.interface';
import type { LocalKeyTable } from './local-key-table';
import type { ForceReleaseOutcome, LockBackend, LockRecord } from './lock-backend.interface';
import { LockOptionsError } from './lock.errors';
import type { ResolvedLockModuleOptions } from './lock-module-options.interface';
import { assertPrintable, assertValidKey } from './lock-options.validation';
import type { StoreCalls } from './store-calls';
import type { LockEvents } from './events/lock-events';

/**
 * What an operator asks about locks (`inspect`, `list`, `held`) and the reap (`forceRelease`):
 * never on the path of taking or holding one.
 */
export class LockOperations {
  private readonly logger = new Logger('SpaceLockService');

  constructor(
    private readonly backend: LockBackend,
    private readonly options: ResolvedLockModuleOptions,
    private readonly calls: StoreCalls,
    private readonly table: LocalKeyTable,
    private readonly instanceId: string,
    private readonly events: LockEvents,
  ) {}

  /** The holder of `key` (the oldest, for shared locks), or `null` when free. */
  async inspect(key: string): Promise<LockInfo | null> {
    return (await this.inspectAll(key))[0] ?? null;
  }

  /** Every holder of `key` (several in shared mode or with `limit`), oldest first. */
  async inspectAll(key: string): Promise<LockInfo[]> {
    assertValidKey(key);
    const records = await this.calls.call('inspect', () => this.backend.inspect(this.storeKey(key)));
    return records.map((record) => this.toInfo(record, records.length));
  }

  /** Holders visible to the backend, stale ones marked. */
  async list(options: ListLocksOptions = {}): Promise<LockInfo[]> {
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 1_000;
    if (typeof prefix !== 'string') throw new LockOptionsError('list prefix must be a string');
    if (!Number.isInteger(limit) || limit < 1) throw new LockOptionsError('list limit must be a positive integer');
    const records = await this.calls.call('list', () =>
      this.backend.list({ prefix: this.options.keyPrefix + prefix, limit }),
    );
    const perKey = new Map<string, number>();
    for (const record of records) perKey.set(record.key, (perKey.get(record.key) ?? 0) + 1);
    return records
      .filter((record) => record.key.startsWith(this.options.keyPrefix))
      .map((record) => this.toInfo(record, perKey.get(record.key) ?? 1));
  }

  /** Who waits for `key`: in the store (backends with `queueLength`) and behind this instance's holder. */
  async waiters(key: string): Promise<LockWaiters> {
    assertValidKey(key);
    const storeKey = this.storeKey(key);
    const local = this.table.get(storeKey)?.waiters.length ?? 0;
    const queueLength = this.backend.queueLength?.bind(this.backend);
    if (!queueLength) return { queued: null, local };
    return { queued: await this.calls.call('queueLength', () => queueLength(storeKey)), local };
  }

  /** Leases this module instance holds now. */
  held(): HeldLockSummary[] {
    const summaries: HeldLockSummary[] = [];
    for (const lease of this.table.leases()) {
      if (lease.state !== 'held') continue;
      const { key, token, fencingToken, mode, limit, ownerId, acquiredAt } = lease;
      const summary: HeldLockSummary = { key, token, fencingToken, mode, ownerId, acquiredAt };
      if (limit !== undefined) summary.limit = limit;
      summaries.push(summary);
    }
    return summaries;
  }

  /**
   * An operator's reap. The evicted holder learns at its next heartbeat (its signal aborts);
   * fenced resources reject its writes from now on.
   */
  async forceRelease(key: string, options: ForceReleaseOptions): Promise<ForceReleaseOutcome> {
    assertValidKey(key);
    if (typeof options?.reason !== 'string' || options.reason.trim() === '') {
      throw new LockOptionsError('forceRelease needs a non-empty reason');
    }
    // Both end up in the log line: keep them to one printable line.
    assertPrintable('forceRelease reason', options.reason);
    if (options.caller !== undefined) assertPrintable('forceRelease caller', options.caller);
    const expected = options.expectFencingToken;
    if (expected !== undefined && (typeof expected !== 'number' || !Number.isSafeInteger(expected) || expected < 0)) {
      throw new LockOptionsError(`forceRelease expectFencingToken must be a non-negative integer, got ${String(expected)}`);
    }
    const caller = options.caller ?? this.options.ownerId;
    const stored = await this.calls.call('forceRelease', () =>
      this.backend.forceRelease({
        key: this.storeKey(key),
        reason: options.reason,
        expectFencingToken: options.expectFencingToken,
      }),
    );
    // The holder records carry the store key; callers know keys without the keyPrefix (as `list` shows them).
    const outcome: ForceReleaseOutcome =
      stored.outcome === 'released' && stored.previous
        ? { ...stored, previous: this.withoutPrefix(stored.previous) }
        : stored.outcome === 'changed-hands' && stored.current
          ? { ...stored, current: this.withoutPrefix(stored.current) }
          : stored;
    this.logger.warn(
      `forceRelease "${key}" by ${caller} (reason: ${options.reason}): ${outcome.outcome}` +
        ('previous' in outcome && outcome.previous
          ? ` (was ${outcome.previous.ownerId}, pid ${outcome.previous.pid}, fencing token ${outcome.previous.fencingToken})`
          : ''),
    );
    if (this.events.active) {
      this.events.emit({ type: 'reaped', key, backend: this.backend.name, reason: options.reason, caller, outcome: outcome.outcome });
    }
    return outcome;
  }

  private toInfo(record: LockRecord, holderCount: number): LockInfo {
    return {
      ...record,
      key: record.key.slice(this.options.keyPrefix.length),
      ageMs: Math.max(0, Date.now() - record.acquiredAt),
      local: record.instanceId === this.instanceId,
      holderCount,
    };
  }

  private withoutPrefix(record: LockRecord): LockRecord {
    const { keyPrefix } = this.options;
    return record.key.startsWith(keyPrefix) ? { ...record, key: record.key.slice(keyPrefix.length) } : record;
  }

  private storeKey(key: string): string {
    return this.options.keyPrefix + key;
  }
}
