// Types only: apps on other backends never load ioredis (see redis-backend.factory.ts).
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import type { ReplicaConfirmationOptions } from './replica-confirmation';

/**
 * Where the Redis backend gets its connection. Give exactly one of `namespace`,
 * `clusterNamespace`, `client`, `url` / `connection`, or `cluster`.
 *
 * Connections taken from the app (`namespace`, `clusterNamespace`, `client`) are never
 * closed by the lock module; connections it creates (`url`, `connection`, `cluster`) are
 * closed on shutdown, after every held lease has been released.
 */
export interface RedisBackendOptions {
  /**
   * Take the connection from `@nestjs-labs/nestjs-ioredis`: `RedisService.getOrThrow(namespace)`.
   * `RedisModule.forRoot` must be registered (global, its default). Default: unset.
   */
  namespace?: string | symbol;
  /**
   * Take a Redis Cluster connection from `@nestjs-labs/nestjs-ioredis`:
   * `ClusterService.getOrThrow(clusterNamespace)`. Default: unset.
   */
  clusterNamespace?: string | symbol;
  /** A client the app built (`new Redis(...)` or `new Cluster(...)`); never closed by us. Default: unset. */
  client?: Redis | Cluster;
  /**
   * `redis://` or `rediss://` URL of a connection the module owns and closes on shutdown.
   * Combined with `connection` when both are given. Default: unset.
   */
  url?: string;
  /**
   * ioredis options for a connection the module owns (Sentinel works here too:
   * `{ sentinels, name }`). Unless overridden, owned connections use
   * `maxRetriesPerRequest: 1` so calls fail fast while Redis is down instead of queueing.
   * Default: unset.
   */
  connection?: RedisOptions;
  /** A Redis Cluster the module owns and closes on shutdown. Default: unset. */
  cluster?: { nodes: ClusterNode[]; options?: ClusterOptions };
  /**
   * Warn once at bootstrap when `maxmemory-policy` is not `noeviction` (every `volatile-*`
   * and `allkeys-*` policy may evict a held lease). Default `true`.
   */
  warnOnEviction?: boolean;
  /**
   * Most leases one heartbeat script touches. Bigger batches are split into several scripts
   * sent together (still one round trip) so Redis is never blocked long by one script.
   * Default 1 000.
   */
  extendChunkSize?: number;
  /**
   * `COUNT` hint for each `SCAN` step of `list()`. Listing never uses `KEYS`. Default 500.
   */
  scanCount?: number;
  /**
   * Waiters of every process queue in arrival order, and a release passes the lock to the
   * first one Redis saw within the last second (no further round trip). One not seen for
   * longer only gets the lock kept for it this long, and asks again when woken; if it died,
   * the lock is free again after this. Default 250 ms.
   */
  queueReservationMs?: number;
  /**
   * Confirm every grant, hand-off and release with `WAIT min timeoutMs` before the call
   * returns, so a failover to a confirmed replica keeps them. A grant that `min` replicas do
   * not acknowledge within `timeoutMs` is released again and the call fails with
   * `LockBackendError` (HTTP 503 without `Retry-After`); it never counts as held. Heartbeats
   * stay batched, on a connection of their own. Standalone and Sentinel only. Default: unset
   * (nothing is confirmed).
   */
  replicas?: ReplicaConfirmationOptions;
}
