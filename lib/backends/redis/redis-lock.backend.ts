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
import {
  FENCE_SUFFIX,
  HOLDER_SUFFIX,
  HOLDERS_SUFFIX,
  QUEUE_SUFFIX,
  WAITING_SUFFIX,
  clusterSlot,
  holderPattern,
  leaseKeyOf,
  lockKeys,
} from './redis-lock-keys';
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
  type LockScript,
} from './redis-lock.scripts';
import { settleWithin } from '../../settle-within';
import { errorMessage } from '../../lock.errors';

export type RedisClient = Redis | Cluster;

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

type Reply = string | number | null | Reply[];
/** EVALSHA / EVAL as called here: `[shaOrLua, numberOfKeys?, ...keysAndArgs]`. */
type ScriptCommand = (this: RedisClient, ...command: (string | number)[]) => Promise<Reply>;

const QUIT_TIMEOUT_MS = 1_000;
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
  /** With `replicas`: heartbeats' own connection, so they never queue behind a `WAIT`. */
  private heartbeats?: RedisClient;
  private resolved?: { client: RedisClient; keyPrefix: string };
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
  constructor(
    private readonly source: RedisClient | (() => RedisClient),
    options: RedisLockBackendOptions = {},
  ) {
    this.settings = {
      ownsClient: options.ownsClient ?? false,
      warnOnEviction: options.warnOnEviction ?? true,
      extendChunkSize: positive('extendChunkSize', options.extendChunkSize, 1_000),
      scanCount: positive('scanCount', options.scanCount, 500),
      queueReservationMs: positive('queueReservationMs', options.queueReservationMs, 250),
      probeTimeoutMs: positive('probeTimeoutMs', options.probeTimeoutMs, 2_000),
    };
    this.turn = turnScripts(this.settings.queueReservationMs);
    this.holderSet = new RedisHolderSet(this.settings.queueReservationMs, (script, args) => this.run(script, args));
    if (options.replicas) this.replicas = new ReplicaConfirmation(options.replicas);
    this.channels = new ReleaseChannels((sharded) => duplicateOf(this.client, sharded), this.logger);
  }

  /** How releases reach waiters, detected once at `init()` (see `PublishMode`). */
  get publishMode(): PublishMode {
    return this.releaseMode;
  }

  get client(): RedisClient {
    return this.connection().client;
  }

  async init(): Promise<void> {
    this.connection();
    if (this.replicas && this.isCluster) {
      throw new LockOptionsError('redis.replicas is not supported on Redis Cluster (WAIT has no key to route it to the shard of a lock)');
    }
    if (this.isCluster) await this.choosePublishMode();
    await Promise.all([this.loadScripts(), this.settings.warnOnEviction ? this.warnOnEviction() : undefined]);
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

  /** So the first calls are EVALSHA hits; `run()` still falls back to EVAL (restart, fail-over). */
  private async loadScripts(): Promise<void> {
    try {
      const scripts = [...LOCK_SCRIPTS, this.turn.release, this.turn.leaveQueue, this.forceReleaseScript, ...this.holderSet.loaded];
      const loads = this.scanNodes().flatMap((node) => scripts.map((script) => node.script('LOAD', script.lua)));
      await settleWithin(Promise.all(loads), this.settings.probeTimeoutMs, noAnswerWithin(this.settings.probeTimeoutMs));
    } catch (error) {
      this.logger.debug(`Could not preload the lock scripts: ${errorMessage(error)}`);
    }
  }

  private async warnOnEviction(): Promise<void> {
    let policies: string[];
    try {
      policies = await settleWithin(this.evictionPolicies(), this.settings.probeTimeoutMs, noAnswerWithin(this.settings.probeTimeoutMs));
    } catch (error) {
      // CONFIG is often disabled or renamed on managed Redis: nothing to learn, nothing to fail.
      this.logger.debug(`Could not read maxmemory-policy: ${errorMessage(error)}`);
      return;
    }
    const risky = [...new Set(policies.filter((policy) => policy !== 'noeviction'))];
    if (risky.length > 0) {
      this.logger.warn(
        `Redis maxmemory-policy is ${risky.join(', ')}: under memory pressure Redis may evict a held lock ` +
          `(two holders at once) or its fencing counter. Use maxmemory-policy noeviction for lock data.`,
      );
    }
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
    if (!mixed && !this.isCluster) return this.confirmGrant(await this.acquireGroup(requests), requests);
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
    const fencingToken = await this.run(HAND_OVER, [...this.grantArgs(to), from.token]);
    if (typeof fencingToken !== 'number') return null;
    await this.confirmGrant({ acquired: true }, [to]);
    return { fencingToken };
  }

  async extend(leases: readonly ExtendRequest[]): Promise<(boolean | null)[]> {
    if (leases.length === 0) return [];
    // A Cluster script may only touch one slot, and every lock has its own: one script per
    // lease there, all sent at once (pipelined per node). Standalone: one script per chunk,
    // plain leases and those of locks with several holders in chunks of their own.
    const chunkSize = this.isCluster ? 1 : this.settings.extendChunkSize;
    const multi = leases.filter(isMultiHolder);
    const plain = multi.length === 0 ? leases : leases.filter((lease) => !isMultiHolder(lease));
    const chunks: ExtendRequest[][] = [];
    for (const kind of [plain, multi]) {
      for (let start = 0; start < kind.length; start += chunkSize) chunks.push(kind.slice(start, start + chunkSize));
    }
    const answers = await Promise.allSettled(
      chunks.map((chunk) => {
        if (isMultiHolder(chunk[0])) return this.runOn(this.heartbeatClient, HOLDER_EXTEND, this.holderSet.extendArgs(chunk)) as Promise<number[]>;
        const keys = chunk.flatMap((lease) => {
          const { lease: leaseKey, holder } = lockKeys(lease.key);
          return [leaseKey, holder];
        });
        const args = chunk.flatMap((lease) => [lease.token, String(lease.ttlMs)]);
        return this.runOn(this.heartbeatClient, EXTEND, [keys.length, ...keys, ...args]) as Promise<number[]>;
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
      const message = await this.channels.wait(this.clientKeyPrefix + keys.channel, Math.max(1, Math.ceil(until - performance.now())), signal, heldByAnother);
      const passed = message === undefined ? null : passedLease(message);
      if (!passed) return;
      if (passed.token === token) return this.confirmPassed(key, token, passed.fencingToken);
      // Passed to the waiter ahead of us: the lock is still taken.
      if (signal.aborted || performance.now() >= until) return;
    }
  }

  async leaveQueue(key: string, token: string): Promise<void> {
    if ((await this.run(this.turn.leaveQueue, this.turnArgs(key, token))) === 2) await this.holderSet.leaveQueue(key, token);
  }

  inspect(key: string): Promise<LockRecord[]> {
    return this.holderSet.inspect(key);
  }

  async list({ prefix, limit }: ListOptions): Promise<LockRecord[]> {
    const records: LockRecord[] = [];
    const seen = new Set<string>();
    const pattern = holderPattern(this.clientKeyPrefix, prefix);
    for (const node of this.scanNodes()) {
      let cursor = '0';
      do {
        const [next, holderKeys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', this.settings.scanCount);
        cursor = next;
        // A lock may have both record keys (a crashed exclusive holder's, then readers'), and SCAN may repeat a key.
        const keys = holderKeys.map((holderKey) => this.lockKeyOf(holderKey)).filter((key) => key.startsWith(prefix) && !seen.has(key));
        keys.forEach((key) => seen.add(key));
        const found = await Promise.all(keys.map((key) => this.holderSet.inspect(key)));
        for (const record of found.flat()) {
          if (records.length < limit) records.push(record);
        }
      } while (cursor !== '0' && records.length < limit);
      if (records.length >= limit) break;
    }
    return records;
  }

  async forceRelease({ key, expectFencingToken }: ForceReleaseRequest): Promise<ForceReleaseOutcome> {
    const ofSeveral = await this.holderSet.forceRelease(key, expectFencingToken);
    if (ofSeveral) return ofSeveral;
    const keys = lockKeys(key);
    const expected = expectFencingToken === undefined ? '' : String(expectFencingToken);
    const [outcome, pttl, stored] = (await this.run(this.forceReleaseScript, [keys.lease, keys.fence, keys.holder, expected])) as [
      string,
      number,
      string | null,
    ];
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
    this.heartbeats?.disconnect();
    if (!this.settings.ownsClient || !this.resolved) return;
    try {
      await settleWithin(this.client.quit(), QUIT_TIMEOUT_MS, noAnswerWithin(QUIT_TIMEOUT_MS));
    } catch {
      // Redis is gone or slow: nothing left to flush, drop the socket.
      this.client.disconnect();
    }
  }

  // --- helpers -------------------------------------------------------------------------

  private connection(): { client: RedisClient; keyPrefix: string } {
    if (this.resolved) return this.resolved;
    const client = typeof this.source === 'function' ? this.source() : this.source;
    this.resolved = { client, keyPrefix: client.options.keyPrefix ?? '' };
    return this.resolved;
  }

  /** ioredis' own `keyPrefix`, which it adds to KEYS but not to SCAN patterns or replies. */
  private get clientKeyPrefix(): string {
    return this.connection().keyPrefix;
  }

  private get isCluster(): boolean {
    return isCluster(this.client);
  }

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
    const [granted, ...values] = (await this.run(ACQUIRE_ALL, [keys.length, ...keys, ...args])) as number[];
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
      const slot = clusterSlot(this.clientKeyPrefix + lockKeys(request.key).lease);
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
      return request.queue ? this.acquireOrQueue(request, request.queue) : this.run(ACQUIRE, this.grantArgs(request), toGrantOutcome);
    }
    return this.holderSet.acquire(request, this.recordTailOf(request), request.queue ? this.queueLifetimeMs(request.queue) : 0);
  }

  private acquireOrQueue(request: LockRequest, queue: NonNullable<LockRequest['queue']>): Promise<AcquireOutcome> {
    const [lease, fence, holder, ...grant] = this.grantArgs(request);
    return this.run(ACQUIRE_OR_QUEUE, [lease, fence, holder, lease + QUEUE_SUFFIX, lease + WAITING_SUFFIX, ...grant, this.queueLifetimeMs(queue)], toAcquireOutcome);
  }

  /** The queue outlives the longest wait in it, then disappears with its abandoned tokens. */
  private queueLifetimeMs(queue: NonNullable<LockRequest['queue']>): number {
    return queue.waitMs + this.settings.queueReservationMs + QUEUE_GRACE_MS;
  }

  private releaseUnconfirmed(lease: LeaseRef): Promise<ReleaseOutcome> {
    if (isMultiHolder(lease)) return this.holderSet.release(lease);
    return this.run(this.turn.release, this.turnArgs(lease.key, lease.token), toReleaseOutcome);
  }

  private get heartbeatClient(): RedisClient {
    if (!this.replicas) return this.client;
    this.heartbeats ??= duplicateOf(this.client);
    return this.heartbeats;
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
    if ((await this.run(CONFIRM_HELD, [leaseKeyOf(key), token])) !== 1) return undefined;
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

  /**
   * EVALSHA, and EVAL when this node does not have the script yet (first use, restart,
   * fail-over). Called directly rather than through ioredis `defineCommand`, whose wrapper
   * costs a command subclass, closures and an extra promise on every call of the hot path.
   */
  private run(script: LockScript, args: (string | number)[]): Promise<Reply>;
  private run<T>(script: LockScript, args: (string | number)[], map: (reply: Reply) => T): Promise<T>;
  private run<T>(script: LockScript, args: (string | number)[], map?: (reply: Reply) => T): Promise<T | Reply> {
    return this.runOn(this.client, script, args, map);
  }

  private runOn<T>(client: RedisClient, script: LockScript, args: (string | number)[], map?: (reply: Reply) => T): Promise<T | Reply> {
    const command = script.numberOfKeys === undefined ? [script.sha, ...args] : [script.sha, script.numberOfKeys, ...args];
    return (client.evalsha as ScriptCommand).apply(client, command).then(map, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      command[0] = script.lua;
      const evaluated = (client.eval as ScriptCommand).apply(client, command);
      return map ? evaluated.then(map) : evaluated;
    });
  }

  /** Standalone: the client. Cluster: every master, since SCAN walks one node's keyspace. */
  private scanNodes(): Redis[] {
    const client = this.client;
    return isCluster(client) ? client.nodes('master') : [client as Redis];
  }

  /** The lock key stored in a holder key's name (`<clientPrefix>{E}:holder` or `…:holders`), unescaped. */
  private lockKeyOf(holderKey: string): string {
    const suffix = holderKey.endsWith(HOLDERS_SUFFIX) ? HOLDERS_SUFFIX : HOLDER_SUFFIX;
    const tagged = holderKey.slice(this.clientKeyPrefix.length, holderKey.length - suffix.length);
    return tagged.slice(1, -1).replace(/%(25|7D)/g, (escape) => (escape === '%25' ? '%' : '}'));
  }

  private async evictionPolicies(): Promise<string[]> {
    const answers = await Promise.all(
      this.scanNodes().map((node) => node.config('GET', 'maxmemory-policy') as Promise<unknown>),
    );
    return answers.map((answer) => (Array.isArray(answer) ? String(answer[1] ?? '') : '')).filter(Boolean);
  }
}

/** `granted⏎token⏎fence` from the release channel, else `null`. */
function passedLease(message: string): { token: string; fencingToken: number } | null {
  const [kind, token, fence] = message.split('\n');
  if (kind !== GRANTED_MESSAGE || token === undefined) return null;
  const fencingToken = Number(fence);
  return Number.isSafeInteger(fencingToken) ? { token, fencingToken } : null;
}

/** Duck-typed so this file never needs ioredis at run time. */
// ioredis 6 gives Redis#duplicate and Cluster#duplicate generic signatures that a union cannot call.
function duplicateOf(client: RedisClient, sharded = false): RedisClient {
  if (!isCluster(client)) return client.duplicate();
  return sharded ? client.duplicate([], { shardedSubscribers: true }) : client.duplicate();
}

function isCluster(client: RedisClient): client is Cluster {
  return client.isCluster;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new LockOptionsError(`redis.${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function noAnswerWithin(ms: number): () => Error {
  return () => new Error(`no answer within ${ms} ms`);
}
