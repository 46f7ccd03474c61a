import type {
  AcquireOutcome,
  ExtendRequest,
  ForceReleaseOutcome,
  LeaseRef,
  LockRecord,
  LockRequest,
  ReleaseOutcome,
} from '../../lock-backend.interface';
import { HOLDER_EXTEND, HOLDER_TRY_ACQUIRE, INSPECT, holderKind, holderScripts } from './holder-set.scripts';
import { toLockRecord } from './redis-holder-record';
import { EXPIRIES_SUFFIX, FENCE_SUFFIX, HOLDER_SUFFIX, HOLDERS_SUFFIX, QUEUE_SUFFIX, WAITING_SUFFIX, leaseKeyOf, lockKeys } from './redis-lock-keys';
import { LIMIT_MARKER, RESERVED_FOR, SHARED_MARKER, type LockScript } from './redis-lock.scripts';
import { shardedScript } from './release-publish-mode';

/** Runs one script (EVALSHA, EVAL on NOSCRIPT) on the backend's connection. */
export type ScriptRunner = (script: LockScript, args: (string | number)[]) => Promise<unknown>;

/** A lease of a lock with several holders: a reader's, or a permit's. */
export function isMultiHolder(lease: Pick<LeaseRef, 'mode' | 'limit'>): boolean {
  return lease.mode === 'shared' || lease.limit !== undefined;
}

/** The lease key holds the marker of a shared or permit lock (`holder-set.scripts.ts`). */
export function isMultiMarker(lease: string | null): lease is string {
  return lease !== null && (lease === SHARED_MARKER || lease.startsWith(LIMIT_MARKER));
}

/** All 7 keys of a lock, in the one KEYS order (`redis-lock-keys.ts`). */
export function allKeys(key: string): string[] {
  const lease = leaseKeyOf(key);
  return [lease, lease + FENCE_SUFFIX, lease + HOLDER_SUFFIX, lease + QUEUE_SUFFIX, lease + WAITING_SUFFIX, lease + HOLDERS_SUFFIX, lease + EXPIRIES_SUFFIX];
}

/**
 * Shared locks and `limit` permits on Redis: one thin step per transition (acquire, release,
 * leave the queue, extend, inspect, reap), each one script of `holder-set.scripts.ts`. Plain
 * exclusive leases never come here: `RedisLockBackend` serves them with its own scripts.
 */
export class RedisHolderSet {
  private scripts: ReturnType<typeof holderScripts>;

  constructor(
    reservationMs: number,
    private readonly run: ScriptRunner,
  ) {
    this.scripts = holderScripts(reservationMs);
  }

  /** Every script, for preloading. */
  get loaded(): LockScript[] {
    return [...Object.values(this.scripts), HOLDER_TRY_ACQUIRE, HOLDER_EXTEND, INSPECT];
  }

  /** Publish with `SPUBLISH` (see `PublishMode`). */
  useShardedPublish(): void {
    const { acquire, release, leaveQueue, forceRelease } = this.scripts;
    this.scripts = { acquire: shardedScript(acquire), release: shardedScript(release), leaveQueue: shardedScript(leaveQueue), forceRelease: shardedScript(forceRelease) };
  }

  /**
   * `tail`: the record's tail (`recordTail()`); `queueLifetimeMs` 0 for an attempt that does not
   * wait: HOLDER_TRY_ACQUIRE with 5 KEYS, the 7-key acquire only when it finds waiters queued.
   * Not async (as the exclusive path): the reply is mapped in one `then`.
   */
  acquire(request: LockRequest, tail: string, queueLifetimeMs: number): Promise<AcquireOutcome> {
    const kind = holderKind(request.limit);
    const ttl = String(request.ttlMs);
    if (queueLifetimeMs > 0) return this.acquireWithQueue(request, ttl, tail, kind, queueLifetimeMs);
    const lease = leaseKeyOf(request.key);
    const keys = [lease, lease + FENCE_SUFFIX, lease + QUEUE_SUFFIX, lease + HOLDERS_SUFFIX, lease + EXPIRIES_SUFFIX];
    return this.run(HOLDER_TRY_ACQUIRE, [...keys, request.token, ttl, tail, kind]).then((reply) =>
      reply === null ? this.acquireWithQueue(request, ttl, tail, kind, 0) : toGrantOutcome(reply),
    );
  }

  /** The 7-key acquire script: waiters, and one-shot attempts that found waiters queued. */
  private acquireWithQueue(request: LockRequest, ttl: string, tail: string, kind: string, queueLifetimeMs: number): Promise<AcquireOutcome> {
    return this.run(this.scripts.acquire, [...allKeys(request.key), request.token, ttl, tail, kind, queueLifetimeMs]).then(toGrantOutcome);
  }

  release(lease: LeaseRef): Promise<ReleaseOutcome> {
    return this.run(this.scripts.release, [...allKeys(lease.key), lease.token]).then(toReleaseOutcome);
  }

  /** After the exclusive leaveQueue found the lock held by several (see `turnScripts`). */
  async leaveQueue(key: string, token: string): Promise<void> {
    await this.run(this.scripts.leaveQueue, [...allKeys(key), token]);
  }

  /** `[numberOfKeys, ...KEYS, ...ARGV]` of HOLDER_EXTEND for these leases. */
  extendArgs(leases: readonly ExtendRequest[]): (string | number)[] {
    const keys = leases.flatMap((lease) => {
      const { lease: leaseKey, holders, expiries } = lockKeys(lease.key);
      return [leaseKey, holders, expiries];
    });
    return [keys.length, ...keys, ...leases.flatMap((lease) => [lease.token, String(lease.ttlMs)])];
  }

  /** `null`: the lock has at most one holder, the exclusive FORCE_RELEASE's to reap. */
  async forceRelease(key: string, expectFencingToken: number | undefined): Promise<ForceReleaseOutcome | null> {
    const expected = expectFencingToken === undefined ? '' : String(expectFencingToken);
    const [outcome, remaining, stored, lease] = (await this.run(this.scripts.forceRelease, [...allKeys(key), expected])) as [string, number, string | false, string];
    if (outcome === 'plain') return null;
    const record = stored ? toLockRecord(key, remaining > 0 ? remaining : -2, null, stored, ...modeOf(lease)) : null;
    return outcome === 'released' ? { outcome: 'released', previous: record } : { outcome: 'changed-hands', current: record };
  }

  /** Every holder of `key`, oldest grant first: one exclusive holder, or all readers or permits. */
  async inspect(key: string): Promise<LockRecord[]> {
    const [pttl, fence, stored, lease, holders] = (await this.run(INSPECT, allKeys(key))) as [number, string | null, string | null, string | null, (number | string)[]];
    if (!isMultiMarker(lease)) {
      const record = toLockRecord(key, pttl, fence, stored);
      return record ? [record] : [];
    }
    const records: LockRecord[] = [];
    for (let index = 0; index + 1 < holders.length; index += 2) {
      const remaining = holders[index] as number;
      const record = toLockRecord(key, remaining > 0 ? remaining : -2, null, holders[index + 1] as string, ...modeOf(lease));
      if (record) records.push(record);
    }
    return records.sort((a, b) => a.fencingToken - b.fencingToken);
  }
}

/**
 * Reply of ACQUIRE_OR_QUEUE: `{1, fencingToken}`, `{0, retryAfterMs}`, or `{2, N}` (the lock
 * is held with another limit: a caller error).
 */
export function toAcquireOutcome(reply: unknown): AcquireOutcome {
  const [answer, value] = reply as [number, number];
  if (answer === 1) return { acquired: true, fencingToken: value };
  if (answer === 2) return { acquired: false, retryAfterMs: null, limitInUse: value };
  return { acquired: false, retryAfterMs: value >= 0 ? value : null };
}

/**
 * Reply of ACQUIRE and of the holder acquire: the fencing token (>= 1), `-2 - retryAfterMs`
 * when held, `{N}` when held with limit N (another than asked: a caller error).
 */
export function toGrantOutcome(reply: unknown): AcquireOutcome {
  if (typeof reply !== 'number') return { acquired: false, retryAfterMs: null, limitInUse: (reply as number[])[0] };
  if (reply >= 1) return { acquired: true, fencingToken: reply };
  const pttl = -2 - reply;
  return { acquired: false, retryAfterMs: pttl >= 0 ? pttl : null };
}

/** Reply of both release scripts: 1 released, 0 expired, -1 the lock is another's. */
export function toReleaseOutcome(reply: unknown): ReleaseOutcome {
  if (reply === 1) return 'released';
  return reply === 0 ? 'expired' : 'not-owner';
}

/** Mode and limit of the holders of a lock whose lease key holds `lease`. */
function modeOf(lease: string | null): ['exclusive' | 'shared', number?] {
  if (lease === SHARED_MARKER) return ['shared'];
  return lease?.startsWith(LIMIT_MARKER) ? ['exclusive', Number(lease.slice(LIMIT_MARKER.length))] : ['exclusive'];
}

/** Whether `lease` (a lease key's content) leaves `token`'s wait undecided: held by others. */
export function heldByOthers(lease: string | null, token: string | undefined, holdsOrKept: () => Promise<boolean>): Promise<boolean> {
  if (lease === null || lease === token || (token !== undefined && lease === RESERVED_FOR + token)) return Promise.resolve(false);
  if (!isMultiMarker(lease) || token === undefined) return Promise.resolve(true);
  return holdsOrKept().then((ours) => !ours);
}
