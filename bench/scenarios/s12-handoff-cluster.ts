import { execFileSync } from 'node:child_process';
import { num, x } from '../harness/format';
import type { Scenario } from '../harness/context';
import { pingRoundTripMs, RedisServer } from '../harness/redis-server';
import { sleep } from '../harness/measure';
import { handoffMatrix, handoffTable, HANDOFF_NOTE, type HandoffVariant } from './s2-handoff-redis';

/**
 * 11. Scenario 2's polite hand-off on a 3-master Redis Cluster, where a Redis >= 7 Cluster
 * wakes waiters with sharded pub/sub (SPUBLISH / SSUBSCRIBE inside the lock's shard).
 */
export const handoffClusterScenario: Scenario = {
  id: 12,
  title: 'Hand-off under contention, Redis Cluster of 3 masters (2 processes x 2 workers, one key, hold 1 ms)',
  async run(context) {
    const servers: RedisServer[] = [];
    try {
      for (let index = 0; index < 3; index += 1) {
        servers.push(await RedisServer.start(context.placement, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']));
      }
      execFileSync('redis-cli', ['--cluster', 'create', ...servers.map((server) => `127.0.0.1:${server.port}`), '--cluster-replicas', '0', '--cluster-yes'], { stdio: 'ignore' });
      const probes = servers.map((server) => server.client());
      while (!(await Promise.all(probes.map((probe) => probe.cluster('INFO')))).every((info) => String(info).includes('cluster_state:ok'))) await sleep(100);
      const nodes = servers.map((server) => ({ host: '127.0.0.1', port: server.port }));
      const clusterContext = { ...context, locks: { ...context.locks, ours: { ...context.locks.ours, redis: { cluster: { nodes } } } } };
      const variants: HandoffVariant[] = [{ label: 'polite', processes: 2, workersPerProcess: 2, holdMs: 1, greedy: false }];
      const ping = await pingRoundTripMs(probes[0]);
      const summaries = await handoffMatrix(clusterContext, ['ours-redis'], variants, 's11');
      const polite = summaries.get('polite|ours-redis')!;
      return {
        body: [`PING round trip to one master (median): ${num(ping, 3)} ms.`, '', handoffTable(summaries, ['ours-redis'], variants, ping, 'PING'), '', HANDOFF_NOTE].join('\n'),
        verdicts: [
          {
            scenario: '11',
            target: 'report: median cross-process hand-off on a Cluster (sharded wake-ups on Redis >= 7)',
            measured: `${num(polite.crossGapP50Ms, 3)} ms = ${x(polite.crossGapP50Ms / ping)} PING`,
            met: null,
          },
        ],
      };
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
  },
};
