import { Logger } from '@nestjs/common';
// Types only: this file is exported from the package root, which must load without ioredis.
import type { Cluster, Redis } from 'ioredis';
import type {
  AcquireAllOutcome,
  AcquireOutcome,
  ExtendRequest,
  ForceReleaseOutcome,
  ForceReleaseRequest,
  LeaseRef,
  ListOptions,
  LockBackend,
  LockOwner,
  LockRecord,
  LockRequest,
  PassedLease,
  ReleaseOutcome,
} from '../../lock-backend.interface';
import { LockBackendError, LockNotSupportedError, LockOptionsError } from '../../lock.errors';
import { ReleaseChannels } from './redis-release-channels';
import { recordTail, toLockRecord } from './redis-holder-record';
import { HOLDER_EXTEND } from './holder-set.scripts';
import { RedisHolderSet, heldByOthers, isMultiHolder, toAcquireOutcome, toGrantOutcome, toReleaseOutcome } from './redis-holder-set';
import { FENCE_SUFFIX, HOLDER_SUFFIX, QUEUE_SUFFIX, WAITING_SUFFIX, clusterSlot, leaseKeyOf, lockKeys } from './redis-lock-keys';
import { RedisConnection, noAnswerWithin, type RedisClient } from './redis-connection';
import { listLocks } from './redis-lock-listing';
import { preloadScripts, warnOnEviction } from './redis-startup-checks';
import { CONFIRM_HELD, ReplicaConfirmation, type ReplicaConfirmationOptions } from './replica-confirmation';
import { detectPublishMode, shardedScript, type PublishMode } from './release-publish-mode';
import {
  ACQUIRE,
  ACQUIRE_ALL,
  ACQUIRE_OR_QUEUE,
  EXTEND,
  FORCE_RELEASE,
  HAND_OVER,
  GRANTED_MESSAGE,
  LOCK_SCRIPTS,
  RESERVED_FOR,
  turnScripts,
} from './redis-lock.scripts';
import { settleWithin } from '../../settle-within';
import { errorMessage } from '../../lock.errors';

export type { RedisClient } from './redis-connection';

export interface RedisLockBackendOptions {
  /** Close `client` in `close()`: only for connections the lock module created. Default `false`. */
  ownsClient?: boolean;
  /** See `RedisBackendOptions.warnOnEviction`. Default `true`. */
  warnOnEviction?: boolean;
  /** See `RedisBackendOptions.extendChunkSize`. Default 1 000. */
  extendChunkSize?: number;
  /** See `RedisBackendOptions.scanCount`. Default 500. */
  scanCount?: number;
  /** See `RedisBackendOptions.queueReservationMs`. Default 250. */
  queueReservationMs?: number;
  /** Upper bound on the bootstrap probe (`CONFIG GET`), so a slow Redis never blocks startup. Default 2 000. */
  probeTimeoutMs?: number;
  /** See `RedisBackendOptions.replicas` (already validated). Default: grants are not confirmed. */
  replicas?: ReplicaConfirmationOptions;
}

const QUEUE_GRACE_MS = 1_000;

/**
 * Redis leases with fencing tokens. Every operation on one lock is one Lua script, so one
 * round trip; see `redis-lock-keys.ts` for the key layout. Plain exclusive leases are served
 * here; shared ones and `limit` permits by `RedisHolderSet`.
 */
export class RedisLockBackend implements LockBackend {
  readonly name = 'redis';
  readonly capabilities = { shared: true, limit: true };
  private readonly logger = new Logger(RedisLockBackend.name);
  private readonly channels: ReleaseChannels;
  private readonly settings: Required<Omit<RedisLockBackendOptions, 'replicas'>>;
  private readonly replicas?: ReplicaConfirmation;
  private readonly redis: RedisConnection;
  private readonly ownerJsonCache = new WeakMap<LockOwner, string>();
  /** RELEASE and LEAVE_QUEUE with this backend's queueReservationMs written in. */
  private turn: ReturnType<typeof turnScripts>;
  private readonly holderSet: RedisHolderSet;
  private forceReleaseScript = FORCE_RELEASE;
  private releaseMode: PublishMode = 'classic';

  /**
   * @param source the connection, or a function returning it, called once at `init()` or at
   *   the first call (for connections of a module built after ours, or created on demand).
   */
  constructor(source: RedisClient | (() => RedisClient), options: RedisLockBackendOptions = {}) {
    this.settings = {
      ownsClient: options.ownsClient ?? false,
      warnOnEviction: options.warnOnEviction ?? true,
      extendChunkSize: positive('extendChunkSize', options.extendChunkSize, 1_000),
      scanCount: positive('scanCount', options.scanCount, 500),
      queueReservationMs: positive('queueReservationMs', options.queueReservationMs, 250),
      probeTimeoutMs: positive('probeTimeoutMs', options.probeTimeoutMs, 2_000),
    };
    // With `replicas`, heartbeats get their own connection, so they never queue behind a `WAIT`.
    this.redis = new RedisConnection(source, { ownsClient: this.settings.ownsClient, ownHeartbeatConnection: options.replicas !== undefined });
    this.turn = turnScripts(this.settings.queueReservationMs);
    this.holderSet = new RedisHolderSet(this.settings.queueReservationMs, (script, args) => this.redis.run(script, args));
    if (options.replicas) this.replicas = new ReplicaConfirmation(options.replicas);
    this.channels = new ReleaseChannels((sharded) => this.redis.duplicate(sharded), this.logger);
  }

  /** How releases reach waiters, detected once at `init()` (see `PublishMode`). */
  get publishMode(): PublishMode {
    return this.releaseMode;
  }

  get client(): RedisClient {
    return this.redis.client;
  }

  async init(): Promise<void> {
    if (this.replicas && this.redis.isCluster) {
      throw new LockOptionsError('redis.replicas is not supported on Redis Cluster (WAIT has no key to route it to the shard of a lock)');
    }
    if (this.redis.isCluster) await this.choosePublishMode();
    const scripts = [...LOCK_SCRIPTS, this.turn.release, this.turn.leaveQueue, this.forceReleaseScript, ...this.holderSet.loaded];
    const timeoutMs = this.settings.probeTimeoutMs;
    await Promise.all([
      preloadScripts(this.redis, scripts, timeoutMs, this.logger),
      this.settings.warnOnEviction ? warnOnEviction(this.redis, timeoutMs, this.logger) : undefined,
    ]);
  }

  /** Sharded pub/sub when every master is Redis >= 7: releases then stay inside their shard. */
  private async choosePublishMode(): Promise<void> {
    try {
      this.releaseMode = await settleWithin(detectPublishMode(this.client as Cluster), this.settings.probeTimeoutMs, noAnswerWithin(this.settings.probeTimeoutMs));
    } catch (error) {
      this.logger.debug(`Could not read the Cluster's Redis versions, using classic pub/sub: ${errorMessage(error)}`);
      return;
    }
    if (this.releaseMode !== 'sharded') return;
    this.turn = { release: shardedScript(this.turn.release), leaveQueue: shardedScript(this.turn.leaveQueue) };
    this.forceReleaseScript = shardedScript(FORCE_RELEASE);
    this.holderSet.useShardedPublish();
    this.channels.sharded = true;
  }

  // Not async, here and in `release`: the reply is mapped in the one `then` of `run`, a promise
  // layer fewer on the two calls of every cycle.
  tryAcquire(request: LockRequest): Promise<AcquireOutcome> {
    const outcome = this.acquireUnconfirmed(request);
    return this.replicas ? outcome.then((granted) => this.confirmGrant(granted, [request])) : outcome;
  }

  /**
   * All or none. Standalone and Sentinel: one script for the whole set of plain locks. Cluster:
   * a script may only touch one slot, so one script per slot, in slot order (the same for every
   * caller, so two overlapping sets cannot each keep the other from finishing), and the slots
   * already granted are released again when a later one is held. A set with shared or permit
   * requests is taken the same way, one script per key in the given (sorted) order.
   */
  async tryAcquireAll(requests: readonly LockRequest[]): Promise<AcquireAllOutcome> {
    const mixed = requests.some(isMultiHolder);
    if (!mixed && !this.redis.isCluster) return this.confirmGrant(await this.acquireGroup(requests), requests);
    const fencingTokens = new Map<LockRequest, number>();
    const granted: LockRequest[] = [];
    try {
      for (const group of mixed ? requests.map((request) => [request]) : this.slotGroups(requests)) {
        const outcome = await this.acquireGroup(group);
        if (!outcome.acquired) {
          await this.rollBack(granted);
          return outcome;
        }
        group.forEach((request, index) => fencingTokens.set(request, outcome.fencingTokens[index]));
        granted.push(...group);
      }
    } catch (error) {
      await this.rollBack(granted);
      throw error;
    }
    return this.confirmGrant({ acquired: true, fencingTokens: requests.map((request) => fencingTokens.get(request) as number) }, requests);
  }

  async handOver(from: LeaseRef, to: LockRequest): Promise<{ fencingToken: number } | null> {
    if (isMultiHolder(to)) throw new LockNotSupportedError('handOver passes plain exclusive leases only');
    const fencingToken = await this.redis.run(HAND_OVER, [...this.grantArgs(to), from.token]);
    if (typeof fencingToken !== 'number') return null;
    await this.confirmGrant({ acquired: true }, [to]);
    return { fencingToken };
  }

  async extend(leases: readonly ExtendRequest[]): Promise<(boolean | null)[]> {
    if (leases.length === 0) return [];
    // A Cluster script may only touch one slot, and every lock has its own: one script per
    // lease there, all sent at once (pipelined per node). Standalone: one script per chunk,
    // plain leases and those of locks with several holders in chunks of their own.
    const chunkSize = this.redis.isCluster ? 1 : this.settings.extendChunkSize;
    const multi = leases.filter(isMultiHolder);
    const plain = multi.length === 0 ? leases : leases.filter((lease) => !isMultiHolder(lease));
    const chunks: ExtendRequest[][] = [];
    for (const kind of [plain, multi]) {
      for (let start = 0; start < kind.length; start += chunkSize) chunks.push(kind.slice(start, start + chunkSize));
    }
    const answers = await Promise.allSettled(
      chunks.map((chunk) => {
        if (isMultiHolder(chunk[0])) return this.redis.runOn(this.redis.heartbeatClient, HOLDER_EXTEND, this.holderSet.extendArgs(chunk)) as Promise<number[]>;
        const keys = chunk.flatMap((lease) => {
          const { lease: leaseKey, holder } = lockKeys(lease.key);
          return [leaseKey, holder];
        });
        const args = chunk.flatMap((lease) => [lease.token, String(lease.ttlMs)]);
        return this.redis.runOn(this.redis.heartbeatClient, EXTEND, [keys.length, ...keys, ...args]) as Promise<number[]>;
      }),
    );
    const failed = answers.find((answer): answer is PromiseRejectedResult => answer.status === 'rejected');
    if (failed && answers.every((answer) => answer.status === 'rejected')) throw failed.reason;
    // One Cluster shard failing over must not cost the leases on the healthy ones: its
    // leases are "unknown" and keep counting down locally.
    const stillOurs = answers.flatMap((answer, index) =>
      answer.status === 'fulfilled' ? answer.value.map((value) => value === 1) : chunks[index].map(() => null),
    );
    if (multi.length === 0) return stillOurs;
    // Back into the callers' order: chunks hold the plain leases first, then the others.
    const answerOf = new Map<ExtendRequest, boolean | null>([...plain, ...multi].map((lease, index) => [lease, stillOurs[index]]));
    return leases.map((lease) => answerOf.get(lease) ?? null);
  }

  release(lease: LeaseRef): Promise<ReleaseOutcome> {
    const outcome = this.releaseUnconfirmed(lease);
    return this.replicas ? outcome.then((released) => this.confirmed(released, `release of "${lease.key}"`)) : outcome;
  }

  async waitForRelease(key: string, timeoutMs: number, signal: AbortSignal, token?: string): Promise<PassedLease | void> {
    const keys = lockKeys(key);
    const until = performance.now() + timeoutMs;
    // A lease kept for or passed to `token` may be ours already (its message came before we
    // subscribed): then ask again rather than sleep through it.
    const heldByAnother = async (): Promise<boolean> =>
      heldByOthers(await this.client.get(keys.lease), token, async () => {
        const [holds, kept] = await Promise.all([this.client.zscore(keys.expiries, token as string), this.client.zscore(keys.expiries, RESERVED_FOR + token)]);
        return holds !== null || kept !== null;
      });
    for (;;) {
      const message = await this.channels.wait(this.redis.keyPrefix + keys.channel, Math.max(1, Math.ceil(until - performance.now())), signal, heldByAnother);
      const passed = message === undefined ? null : passedLease(message);
      if (!passed) return;
      if (passed.token === token) return this.confirmPassed(key, token, passed.fencingToken);
      // Passed to the waiter ahead of us: the lock is still taken.
      if (signal.aborted || performance.now() >= until) return;
    }
  }

  async leaveQueue(key: string, token: string): Promise<void> {
    if ((await this.redis.run(this.turn.leaveQueue, this.turnArgs(key, token))) === 2) await this.holderSet.leaveQueue(key, token);
  }

  inspect(key: string): Promise<LockRecord[]> {
    return this.holderSet.inspect(key);
  }

  list(options: ListOptions): Promise<LockRecord[]> {
    return listLocks(this.redis, options, this.settings.scanCount, (key) => this.holderSet.inspect(key));
  }

  async forceRelease({ key, expectFencingToken }: ForceReleaseRequest): Promise<ForceReleaseOutcome> {
    const keys = lockKeys(key);
    const expected = expectFencingToken === undefined ? '' : String(expectFencingToken);
    let answer: [string, number, string | null];
    do {
      const ofSeveral = await this.holderSet.forceRelease(key, expectFencingToken);
      if (ofSeveral) return ofSeveral;
      // Readers or permits may take the lock between the two scripts: then it is theirs to reap.
      answer = (await this.redis.run(this.forceReleaseScript, [keys.lease, keys.fence, keys.holder, expected])) as [string, number, string | null];
    } while (answer[0] === 'multi');
    const [outcome, pttl, stored] = answer;
    const record = toLockRecord(key, pttl, null, stored);
    if (outcome === 'released') return { outcome: 'released', previous: record };
    if (outcome === 'changed-hands') return { outcome: 'changed-hands', current: record };
    return { outcome: 'not-held' };
  }

  /** Waiters queued with `waitMs` (a dead one stays counted until a release passes it over). */
  queueLength(key: string): Promise<number> {
    return this.client.llen(lockKeys(key).queue);
  }

  async close(): Promise<void> {
    this.channels.close();
    await this.redis.close();
  }

  // --- helpers -------------------------------------------------------------------------

  /**
   * One ACQUIRE_ALL script for plain requests whose keys share a slot (or any keys, off a
   * Cluster); a shared or permit request is asked alone.
   */
  private async acquireGroup(requests: readonly LockRequest[]): Promise<AcquireAllOutcome> {
    if (isMultiHolder(requests[0])) {
      const outcome = await this.acquireUnconfirmed(requests[0]);
      if (outcome.acquired) return { acquired: true, fencingTokens: [outcome.fencingToken] };
      const { retryAfterMs, limitInUse } = outcome;
      return { acquired: false, held: [{ key: requests[0].key, retryAfterMs, ...(limitInUse === undefined ? {} : { limitInUse }) }] };
    }
    const grants = requests.map((request) => this.grantArgs(request));
    const keys = grants.flatMap((grant) => grant.slice(0, 3));
    const args = grants.flatMap((grant) => grant.slice(3));
    const [granted, ...values] = (await this.redis.run(ACQUIRE_ALL, [keys.length, ...keys, ...args])) as number[];
    if (granted === 1) return { acquired: true, fencingTokens: values };
    const held: { key: string; retryAfterMs: number | null; limitInUse?: number }[] = [];
    for (let index = 0; index + 2 < values.length; index += 3) {
      const [pttl, limitInUse] = [values[index + 1], values[index + 2]];
      held.push({ key: requests[values[index] - 1].key, ...(limitInUse > 0 ? { retryAfterMs: null, limitInUse } : { retryAfterMs: pttl >= 0 ? pttl : null }) });
    }
    return { acquired: false, held };
  }

  /** Requests grouped by Cluster slot, groups in slot order, requests in given order within one. */
  private slotGroups(requests: readonly LockRequest[]): LockRequest[][] {
    const groups = new Map<number, LockRequest[]>();
    for (const request of requests) {
      const slot = clusterSlot(this.redis.keyPrefix + lockKeys(request.key).lease);
      const group = groups.get(slot);
      if (group) group.push(request);
      else groups.set(slot, [request]);
    }
    return [...groups.entries()].sort(([a], [b]) => a - b).map(([, group]) => group);
  }

  /** Give back the grants of a set that could not be completed; a failure leaves them to expire. */
  private async rollBack(granted: readonly LeaseRef[]): Promise<void> {
    await Promise.all(
      granted.map((request) =>
        this.releaseUnconfirmed(request).catch((error: unknown) =>
          this.logger.warn(`Could not roll back lock "${request.key}" of a lock set: ${errorMessage(error)}; it expires with its lease`),
        ),
      ),
    );
  }

  private acquireUnconfirmed(request: LockRequest): Promise<AcquireOutcome> {
    if (request.mode === 'exclusive' && request.limit === undefined) {
      return request.queue ? this.acquireOrQueue(request, request.queue) : this.redis.run(ACQUIRE, this.grantArgs(request), toGrantOutcome);
    }
    return this.holderSet.acquire(request, this.recordTailOf(request), request.queue ? this.queueLifetimeMs(request.queue) : 0);
  }

  private acquireOrQueue(request: LockRequest, queue: NonNullable<LockRequest['queue']>): Promise<AcquireOutcome> {
    const [lease, fence, holder, ...grant] = this.grantArgs(request);
    return this.redis.run(ACQUIRE_OR_QUEUE, [lease, fence, holder, lease + QUEUE_SUFFIX, lease + WAITING_SUFFIX, ...grant, this.queueLifetimeMs(queue)], toAcquireOutcome);
  }

  /** The queue outlives the longest wait in it, then disappears with its abandoned tokens. */
  private queueLifetimeMs(queue: NonNullable<LockRequest['queue']>): number {
    return queue.waitMs + this.settings.queueReservationMs + QUEUE_GRACE_MS;
  }

  private releaseUnconfirmed(lease: LeaseRef): Promise<ReleaseOutcome> {
    if (isMultiHolder(lease)) return this.holderSet.release(lease);
    return this.redis.run(this.turn.release, this.turnArgs(lease.key, lease.token), toReleaseOutcome);
  }

  /** With `replicas`: `value` once the replicas have every write sent before; else `LockBackendError`. */
  private async confirmed<T>(value: T, what: string): Promise<T> {
    await this.replicas?.confirm(this.client as Redis, what);
    return value;
  }

  /** A grant the replicas did not confirm is given back, and the caller is told the store failed. */
  private async confirmGrant<T extends { acquired: boolean }>(outcome: T, requests: readonly LeaseRef[]): Promise<T> {
    if (!outcome.acquired || !this.replicas) return outcome;
    try {
      return await this.confirmed(outcome, `grant of "${requests.map((request) => request.key).join('", "')}"`);
    } catch (error) {
      await this.rollBack(requests);
      throw error instanceof LockBackendError ? error : new LockBackendError(this.name, `confirming a grant: ${errorMessage(error)}`, error);
    }
  }

  /**
   * A lease another process's release passed to `token`: with `replicas`, confirmed by a write
   * of our own (see CONFIRM_HELD) before it counts; one no longer ours is a wake-up. So is a
   * reader's or permit's (its token is not the lease key's): the waiter's next attempt confirms
   * it, with a `WAIT` of its own.
   */
  private async confirmPassed(key: string, token: string, fencingToken: number): Promise<PassedLease | undefined> {
    if (!this.replicas) return { fencingToken };
    if ((await this.redis.run(CONFIRM_HELD, [leaseKeyOf(key), token])) !== 1) return undefined;
    await this.confirmGrant({ acquired: true }, [{ key, token, mode: 'exclusive' }]);
    return { fencingToken };
  }

  /** KEYS and ARGV of the scripts that end a turn (see `turnScripts`). */
  private turnArgs(key: string, token: string): string[] {
    const lease = leaseKeyOf(key);
    return [lease, lease + FENCE_SUFFIX, lease + HOLDER_SUFFIX, lease + QUEUE_SUFFIX, lease + WAITING_SUFFIX, token];
  }

  /** KEYS (lease, fence, holder) then ARGV (the 3 grant arguments of `stamp_grant`). */
  private grantArgs(request: LockRequest): string[] {
    const lease = leaseKeyOf(request.key);
    return [lease, lease + FENCE_SUFFIX, lease + HOLDER_SUFFIX, request.token, String(request.ttlMs), this.recordTailOf(request)];
  }

  private recordTailOf(request: LockRequest): string {
    return recordTail(Date.now(), this.ownerJson(request.owner));
  }

  /** An owner is the same object for every lease of a service: serialise it once. */
  private ownerJson(owner: LockOwner): string {
    let json = this.ownerJsonCache.get(owner);
    if (json === undefined) {
      json = JSON.stringify({ ownerId: owner.ownerId, instanceId: owner.instanceId, hostname: owner.hostname, pid: owner.pid });
      this.ownerJsonCache.set(owner, json);
    }
    return json;
  }
}

/** `granted⏎token⏎fence` from the release channel, else `null`. */
function passedLease(message: string): { token: string; fencingToken: number } | null {
  const [kind, token, fence] = message.split('\n');
  if (kind !== GRANTED_MESSAGE || token === undefined) return null;
  const fencingToken = Number(fence);
  return Number.isSafeInteger(fencingToken) ? { token, fencingToken } : null;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new LockOptionsError(`redis.${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}
