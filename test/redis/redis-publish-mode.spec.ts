import type { Cluster } from 'ioredis';
import { FORCE_RELEASE, turnScripts } from '../../lib/backends/redis/redis-lock.scripts';
import { detectPublishMode, shardedScript } from '../../lib/backends/redis/release-publish-mode';
import { redisBackendFixture } from './redis-test-app';

/** The real Cluster case (Redis 7.0.15, sharded) is in redis-cluster.spec.ts; these cover the rest. */
describe('release publish mode: sharded pub/sub on a Redis >= 7 Cluster, classic otherwise', () => {
  const fixture = redisBackendFixture();

  it('a standalone server keeps classic pub/sub', () => {
    expect(fixture.backend.publishMode).toBe('classic');
  });

  it('a Cluster with one master below Redis 7 keeps classic pub/sub (fake nodes beside the real Cluster test)', async () => {
    const clusterOf = (...versions: string[]): Cluster =>
      ({
        ping: async () => 'PONG',
        nodes: () => versions.map((version) => ({ info: async () => `# Server\r\nredis_version:${version}\r\n` })),
      }) as unknown as Cluster;
    await expect(detectPublishMode(clusterOf('7.0.15', '6.2.14', '7.2.4'))).resolves.toBe('classic');
    await expect(detectPublishMode(clusterOf('7.0.15', '7.2.4'))).resolves.toBe('sharded');
    await expect(detectPublishMode(clusterOf())).resolves.toBe('classic');
  });

  it('the sharded scripts publish with SPUBLISH only, and still run on the real server', async () => {
    const { release, leaveQueue } = turnScripts(250);
    for (const script of [release, leaveQueue, FORCE_RELEASE]) {
      const sharded = shardedScript(script);
      expect(script.lua).toContain("redis.call('PUBLISH', ");
      expect(sharded.lua).not.toContain("redis.call('PUBLISH', ");
      expect(sharded.lua).toContain("redis.call('SPUBLISH', ");
      expect(sharded.sha).not.toBe(script.sha);
    }
    // SPUBLISH is valid outside a Cluster too: the script compiles and runs.
    const sharded = shardedScript(FORCE_RELEASE);
    await expect(fixture.raw.eval(sharded.lua, 3, '{x}', '{x}:fence', '{x}:holder', '')).resolves.toEqual(['not-held', -2, null]);
  });
});
