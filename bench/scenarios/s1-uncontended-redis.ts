import { num, x } from '../harness/format';
import type { Scenario } from '../harness/context';
import { available, createLockClient, cycleOnce, LABELS, type LockClient, type LockKind } from '../harness/locks';
import { interleaved, summaryTable, type Contender } from '../harness/measure';
import { redisProbe } from '../harness/redis-server';

/** A closed-loop contender doing acquire+release cycles with one lock implementation. */
export function lockContender(kind: LockKind, context: Parameters<typeof createLockClient>[1], keyOf: (loop: number) => string): Contender {
  let client: LockClient | undefined;
  return {
    name: LABELS[kind],
    setup: async () => {
      client = await createLockClient(kind, context);
    },
    cycle: (loop) => cycleOnce(client!, keyOf(loop)),
    teardown: () => client!.close(),
  };
}

/** Our rows that cannot run yet (backend not landed), with the reason. */
export async function missingRows(kinds: readonly LockKind[], context: Parameters<typeof available>[1]): Promise<{ ready: LockKind[]; notes: string[] }> {
  const ready: LockKind[] = [];
  const notes: string[] = [];
  for (const kind of kinds) {
    const problem = await available(kind, context);
    if (problem) notes.push(`- ${LABELS[kind]}: not measured — ${problem}`);
    else ready.push(kind);
  }
  return { ready, notes };
}

/** 1. Uncontended acquire+release on Redis, one cycle at a time. */
export const uncontendedRedisScenario: Scenario = {
  id: 1,
  title: 'Uncontended acquire+release, Redis',
  async run(context) {
    const { ready, notes } = await missingRows(['floor', 'redlock', 'redis-semaphore', 'ours-redis'], context.locks);
    const summaries = await interleaved(
      ready.map((kind) => lockContender(kind, context.locks, () => `s1:${kind}`)),
      context.reps,
      { concurrency: 1, durationMs: context.windowMs, warmupMs: context.warmupMs, probe: () => redisProbe(context.admin) },
    );
    const body = [
      summaryTable(summaries, LABELS.floor, [
        { header: 'commands sent/op', value: (s) => num(s.extra.sentPerOp, 2) },
        { header: 'Redis cmds/op (incl. inside Lua)', value: (s) => num(s.extra.redisCmdsPerOp, 2) },
        { header: 'Redis CPU µs/op', value: (s) => num(s.extra.redisCpuUsPerOp) },
      ]),
      ...notes,
    ].join('\n');
    const byName = new Map(summaries.map((s) => [s.name, s]));
    const floor = byName.get(LABELS.floor)!;
    const ours = byName.get(LABELS['ours-redis']);
    if (!ours) return { body, verdicts: [{ scenario: '1', target: 'ours ≥ 0.9x floor, ≥ 1.0x redlock and redis-semaphore', measured: 'redis backend not available', met: false }] };
    const redlock = byName.get(LABELS.redlock)!;
    const semaphore = byName.get(LABELS['redis-semaphore'])!;
    return {
      body,
      verdicts: [
        { scenario: '1', target: 'throughput ≥ 0.9x the two-round-trip floor', measured: x(ours.opsPerSec / floor.opsPerSec), met: ours.opsPerSec >= 0.9 * floor.opsPerSec },
        {
          scenario: '1',
          target: 'throughput ≥ 1.0x redlock and redis-semaphore',
          measured: `${x(ours.opsPerSec / redlock.opsPerSec)} redlock, ${x(ours.opsPerSec / semaphore.opsPerSec)} redis-semaphore`,
          met: ours.opsPerSec >= redlock.opsPerSec && ours.opsPerSec >= semaphore.opsPerSec,
        },
        {
          scenario: '1',
          target: 'Node CPU per cycle ≤ floor + 5 µs',
          measured: `${num(ours.cpuUsPerOp)} µs vs floor ${num(floor.cpuUsPerOp)} µs (+${num(ours.cpuUsPerOp - floor.cpuUsPerOp)})`,
          met: ours.cpuUsPerOp <= floor.cpuUsPerOp + 5,
        },
      ],
    };
  },
};
