import { Mutex } from 'async-mutex';
import { createService } from '../harness/locks';
import { interleaved, summaryTable, type Contender } from '../harness/measure';
import { num, x } from '../harness/format';
import type { Scenario } from '../harness/context';
import type { SpaceLockService } from '../../lib/space-lock.service';

const noop = (): number => 1;

/** 5. Memory backend vs async-mutex `runExclusive`: cost of one uncontended cycle. */
export const memoryScenario: Scenario = {
  id: 5,
  title: 'Memory backend vs async-mutex (uncontended cycle, one key)',
  async run(context) {
    const mutex = new Mutex();
    let service: SpaceLockService | undefined;
    const contenders: Contender[] = [
      { name: 'async-mutex runExclusive', cycle: () => mutex.runExclusive(noop) },
      {
        name: 'nestjs-lock (memory) withSpaceLock',
        setup: async () => {
          service = await createService({ backend: 'memory' });
        },
        cycle: () => service!.withSpaceLock('k', noop),
        teardown: () => service!.beforeApplicationShutdown(),
      },
    ];
    const summaries = await interleaved(contenders, context.reps, {
      concurrency: 1,
      durationMs: context.windowMs,
      warmupMs: context.warmupMs,
    });
    const [reference, ours] = summaries;
    const costRatio = reference.opsPerSec / ours.opsPerSec;
    const body = summaryTable(summaries, reference.name, [
      { header: 'µs per cycle', value: (s) => num(1e6 / s.opsPerSec) },
    ]);
    return {
      body,
      verdicts: [
        {
          scenario: '5',
          target: 'memory cycle cost ≤ 3x async-mutex runExclusive',
          measured: `${x(costRatio)} (${num(1e6 / ours.opsPerSec)} µs vs ${num(1e6 / reference.opsPerSec)} µs per cycle)`,
          met: costRatio <= 3,
        },
      ],
    };
  },
};
