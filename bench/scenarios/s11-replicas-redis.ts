import { num, x } from '../harness/format';
import type { Scenario } from '../harness/context';
import { createLockClient, cycleOnce, LABELS, type LockClient, type LockContext } from '../harness/locks';
import { interleaved, sleep, summaryTable, type Contender } from '../harness/measure';
import { redisProbe, RedisServer } from '../harness/redis-server';

const CONFIRMED = `${LABELS['ours-redis']}, redis.replicas { min: 1 }`;

function contender(name: string, context: LockContext, key: string): Contender {
  let client: LockClient | undefined;
  return {
    name,
    setup: async () => {
      client = await createLockClient('ours-redis', context);
    },
    cycle: () => cycleOnce(client!, key),
    teardown: () => client!.close(),
  };
}

/**
 * 10. The price of `redis.replicas`: an uncontended acquire+release whose grant and release
 * each wait for one replica (`WAIT 1`), against the same cycle unconfirmed, both on the bench
 * Redis with one replica attached (so both pay for replication itself).
 */
export const replicasRedisScenario: Scenario = {
  id: 11,
  title: 'Uncontended acquire+release, Redis with a replica: grants confirmed by WAIT vs not',
  async run(context) {
    const primaryPort = new URL(context.locks.redisUrl ?? '').port;
    const replica = await RedisServer.start(context.placement, ['--replicaof', '127.0.0.1', primaryPort]);
    try {
      const probe = replica.client();
      while (!(await probe.info('replication')).includes('master_link_status:up')) await sleep(50);
      const confirmed: LockContext = { ...context.locks, ours: { ...context.locks.ours, redis: { replicas: { min: 1, timeoutMs: 1_000 } } } };
      const summaries = await interleaved(
        [contender(LABELS['ours-redis'], context.locks, 's10:plain'), contender(CONFIRMED, confirmed, 's10:confirmed')],
        context.reps,
        { concurrency: 1, durationMs: context.windowMs, warmupMs: context.warmupMs, probe: () => redisProbe(context.admin) },
      );
      const byName = new Map(summaries.map((summary) => [summary.name, summary]));
      const plain = byName.get(LABELS['ours-redis'])!;
      const waited = byName.get(CONFIRMED)!;
      const body = summaryTable(summaries, LABELS['ours-redis'], [{ header: 'Redis CPU µs/op', value: (s) => num(s.extra.redisCpuUsPerOp) }]);
      return {
        body,
        verdicts: [
          {
            scenario: '10',
            target: 'report: cycle throughput with grants and releases confirmed by one replica, as a ratio of the unconfirmed cycle',
            measured: `${x(waited.opsPerSec / plain.opsPerSec)} (${num(waited.opsPerSec)} vs ${num(plain.opsPerSec)} cycles/s)`,
            met: null,
          },
        ],
      };
    } finally {
      await replica.stop();
    }
  },
};
