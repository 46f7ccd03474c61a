import { Logger } from '@nestjs/common';
import type { ModuleRef } from '@nestjs/core';
import type { RedisOptions } from 'ioredis';
import { LockOptionsError } from '../../lock.errors';
import type { LockBackendFactory } from '../lock-backend.factory';
import type { RedisBackendOptions } from './redis-backend-options.interface';
import { RedisLockBackend, type RedisClient } from './redis-lock.backend';
import { replicaOptions } from './replica-confirmation';
import { errorMessage } from '../../lock.errors';

/** Owned connections fail fast while Redis is down instead of queueing calls nobody waits for. */
const OWNED_CONNECTION_DEFAULTS: RedisOptions = { maxRetriesPerRequest: 1, connectionName: 'nestjs-lock' };

const SOURCES = ['namespace', 'clusterNamespace', 'client', 'url', 'cluster'] as const;

/**
 * Loaded by `createLockBackend` only when `backend: 'redis'`; ioredis and
 * `@nestjs-labs/nestjs-ioredis` are imported here, at run time, and only the one needed.
 */
export const createRedisBackend: LockBackendFactory = async ({ options, moduleRef }) => {
  const redis = options.redis ?? {};
  const replicas = replicaOptions(redis.replicas);
  const { client, owned } = await connect(redis, moduleRef);
  return new RedisLockBackend(client, {
    ownsClient: owned,
    warnOnEviction: redis.warnOnEviction,
    extendChunkSize: redis.extendChunkSize,
    scanCount: redis.scanCount,
    queueReservationMs: redis.queueReservationMs,
    replicas,
  });
};

async function connect(
  redis: RedisBackendOptions,
  moduleRef: ModuleRef,
): Promise<{ client: RedisClient | (() => RedisClient); owned: boolean }> {
  // `connection` alone (Sentinel, host/port) is a source too; with `url` it refines it.
  const given: string[] = SOURCES.filter((source) => redis[source] !== undefined);
  if (redis.connection && redis.url === undefined) given.push('connection');
  if (given.length !== 1) {
    throw new LockOptionsError(
      given.length === 0
        ? 'backend "redis" needs one of redis.namespace, redis.clusterNamespace, redis.client, redis.url / redis.connection or redis.cluster'
        : `backend "redis" takes one connection source, got ${given.join(' and ')}`,
    );
  }
  if (redis.client) return { client: redis.client, owned: false };
  if (redis.namespace !== undefined) {
    const { RedisService } = await load(() => import('@nestjs-labs/nestjs-ioredis'), '@nestjs-labs/nestjs-ioredis');
    const namespace = redis.namespace;
    fromApp(moduleRef, RedisService, 'RedisModule');
    return { client: () => fromApp(moduleRef, RedisService, 'RedisModule').getOrThrow(namespace), owned: false };
  }
  if (redis.clusterNamespace !== undefined) {
    const { ClusterService } = await load(() => import('@nestjs-labs/nestjs-ioredis'), '@nestjs-labs/nestjs-ioredis');
    const namespace = redis.clusterNamespace;
    fromApp(moduleRef, ClusterService, 'ClusterModule');
    return { client: () => fromApp(moduleRef, ClusterService, 'ClusterModule').getOrThrow(namespace), owned: false };
  }
  const ioredis = await load(() => import('ioredis'), 'ioredis');
  // Connected only when the backend first needs it, so a rejected option leaks no socket.
  const cluster = redis.cluster;
  if (cluster) return { client: () => listened(new ioredis.Cluster(cluster.nodes, cluster.options)), owned: true };
  const { url } = redis;
  const connection = { ...OWNED_CONNECTION_DEFAULTS, ...redis.connection };
  return { client: () => listened(url ? new ioredis.Redis(url, connection) : new ioredis.Redis(connection)), owned: true };
}

/**
 * A connection we own, with an `error` listener: while Redis is unreachable its errors reach
 * callers as `LockBackendError` and the service's one "store down" warning, instead of
 * ioredis' "Unhandled error event" on stderr at every reconnect.
 */
function listened<T extends RedisClient>(client: T): T {
  const logger = new Logger('RedisLockBackend');
  client.on('error', (error: unknown) => logger.debug(`Redis connection: ${errorMessage(error)}`));
  return client;
}

/**
 * Nest may build our backend before RedisModule's providers (nothing tells it we depend on
 * them), and the instance it hands out that early is a placeholder. So the factory only
 * checks the module is there, and the backend looks the client up at bootstrap.
 */
function fromApp<T>(moduleRef: ModuleRef, token: abstract new (...args: never[]) => T, module: string): T {
  try {
    return moduleRef.get(token, { strict: false });
  } catch (error) {
    throw new LockOptionsError(
      `redis.namespace / redis.clusterNamespace needs @nestjs-labs/nestjs-ioredis's ${module}.forRoot registered in the app: ${errorMessage(error)}`,
    );
  }
}

async function load<T>(importer: () => Promise<T>, name: string): Promise<T> {
  try {
    return await importer();
  } catch (error) {
    throw new LockOptionsError(`backend "redis" needs the optional package "${name}": npm install ${name} (${errorMessage(error)})`);
  }
}
