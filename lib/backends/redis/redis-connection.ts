// Types only: this file is loaded from the package root, which must load without ioredis.
import type { Cluster, Redis } from 'ioredis';
import { settleWithin } from '../../settle-within';
import type { LockScript } from './redis-lock.scripts';

export type RedisClient = Redis | Cluster;

/** A script's reply as ioredis hands it over. */
export type Reply = string | number | null | Reply[];
/** EVALSHA / EVAL as called here: `[shaOrLua, numberOfKeys?, ...keysAndArgs]`. */
type ScriptCommand = (this: RedisClient, ...command: (string | number)[]) => Promise<Reply>;

const QUIT_TIMEOUT_MS = 1_000;

/**
 * The backend's way to Redis: the client (resolved once, at `init()` or the first call, for
 * connections of a module built after ours), the heartbeats' connection, the nodes a `SCAN`
 * must walk, running a script, and closing what we opened.
 */
export class RedisConnection {
  private resolved?: { client: RedisClient; keyPrefix: string };
  private heartbeats?: RedisClient;

  /**
   * @param source the connection, or a function returning it.
   * @param options `ownsClient`: close it in `close()` (connections the lock module created);
   *   `ownHeartbeatConnection`: heartbeats on a duplicate (so they never queue behind a `WAIT`).
   */
  constructor(
    private readonly source: RedisClient | (() => RedisClient),
    private readonly options: { ownsClient: boolean; ownHeartbeatConnection: boolean },
  ) {}

  get client(): RedisClient {
    return this.connect().client;
  }

  /** ioredis' own `keyPrefix`, which it adds to KEYS but not to SCAN patterns, channels or replies. */
  get keyPrefix(): string {
    return this.connect().keyPrefix;
  }

  get isCluster(): boolean {
    return isCluster(this.client);
  }

  /** Heartbeats' connection: the client, or a duplicate of it (see `ownHeartbeatConnection`). */
  get heartbeatClient(): RedisClient {
    if (!this.options.ownHeartbeatConnection) return this.client;
    this.heartbeats ??= this.duplicate();
    return this.heartbeats;
  }

  /** Standalone: the client. Cluster: every master, since SCAN walks one node's keyspace. */
  scanNodes(): Redis[] {
    const client = this.client;
    return isCluster(client) ? client.nodes('master') : [client as Redis];
  }

  /** A new connection like ours (a subscriber; on a Cluster with `sharded`, one for sharded pub/sub). */
  // ioredis 6 gives Redis#duplicate and Cluster#duplicate generic signatures that a union cannot call.
  duplicate(sharded = false): RedisClient {
    const client = this.client;
    if (!isCluster(client)) return client.duplicate();
    return sharded ? client.duplicate([], { shardedSubscribers: true }) : client.duplicate();
  }

  /**
   * EVALSHA, and EVAL when this node does not have the script yet (first use, restart,
   * fail-over). Called directly rather than through ioredis `defineCommand`, whose wrapper
   * costs a command subclass, closures and an extra promise on every call of the hot path.
   */
  run(script: LockScript, args: (string | number)[]): Promise<Reply>;
  run<T>(script: LockScript, args: (string | number)[], map: (reply: Reply) => T): Promise<T>;
  run<T>(script: LockScript, args: (string | number)[], map?: (reply: Reply) => T): Promise<T | Reply> {
    return this.runOn(this.client, script, args, map);
  }

  runOn<T>(client: RedisClient, script: LockScript, args: (string | number)[], map?: (reply: Reply) => T): Promise<T | Reply> {
    const command = script.numberOfKeys === undefined ? [script.sha, ...args] : [script.sha, script.numberOfKeys, ...args];
    return (client.evalsha as ScriptCommand).apply(client, command).then(map, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      command[0] = script.lua;
      const evaluated = (client.eval as ScriptCommand).apply(client, command);
      return map ? evaluated.then(map) : evaluated;
    });
  }

  async close(): Promise<void> {
    this.heartbeats?.disconnect();
    if (!this.options.ownsClient || !this.resolved) return;
    try {
      await settleWithin(this.client.quit(), QUIT_TIMEOUT_MS, noAnswerWithin(QUIT_TIMEOUT_MS));
    } catch {
      // Redis is gone or slow: nothing left to flush, drop the socket.
      this.client.disconnect();
    }
  }

  private connect(): { client: RedisClient; keyPrefix: string } {
    if (this.resolved) return this.resolved;
    const client = typeof this.source === 'function' ? this.source() : this.source;
    this.resolved = { client, keyPrefix: client.options.keyPrefix ?? '' };
    return this.resolved;
  }
}

/** Duck-typed so this file never needs ioredis at run time. */
export function isCluster(client: RedisClient): client is Cluster {
  return client.isCluster;
}

export function noAnswerWithin(ms: number): () => Error {
  return () => new Error(`no answer within ${ms} ms`);
}
