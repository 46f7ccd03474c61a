// Types only: this file is loaded from the package root, which must load without ioredis.
import type { Cluster } from 'ioredis';
import { lockScript, type LockScript } from './redis-lock.scripts';

/**
 * How releases reach waiters. `classic`: `PUBLISH` / `SUBSCRIBE`; on a Cluster every message is
 * broadcast over the cluster bus to every node. `sharded` (Redis >= 7 on Cluster):
 * `SPUBLISH` / `SSUBSCRIBE`, kept inside the shard that owns the lock's slot (the channel
 * `{E}:released` carries the lock's hash tag, so it lives in that slot).
 */
export type PublishMode = 'classic' | 'sharded';

/** Sharded when every master of the Cluster runs Redis 7 or later; classic otherwise (or when unsure). */
export async function detectPublishMode(cluster: Cluster): Promise<PublishMode> {
  // A routed command waits until the client knows the slot map, hence the masters.
  await cluster.ping();
  const masters = cluster.nodes('master');
  if (masters.length === 0) return 'classic';
  const versions = await Promise.all(masters.map(async (node) => /redis_version:(\d+)/.exec(await node.info('server'))?.[1]));
  return versions.every((major) => major !== undefined && Number(major) >= 7) ? 'sharded' : 'classic';
}

const PUBLISH_CALL = "redis.call('PUBLISH', ";

/** `script` publishing with `SPUBLISH` (scripts call it as `redis.call('PUBLISH', channel, message)`). */
export function shardedScript(script: LockScript): LockScript {
  return lockScript(script.lua.split(PUBLISH_CALL).join("redis.call('SPUBLISH', "), script.numberOfKeys);
}
