import { Mutex, Semaphore } from 'async-mutex';
import { createService } from '../harness/locks';
import { interleaved, summaryTable, type Contender, type Summary } from '../harness/measure';
import { num, x, type Verdict } from '../harness/format';
import type { Scenario } from '../harness/context';
import type { SpaceLockService } from '../../lib/space-lock.service';

const noop = (): number => 1;

/** Permits of the semaphore rows, all in flight at once (each loop holds one). */
const PERMITS = 3;

/**
 * 5. Memory backend vs async-mutex `runExclusive`: cost of one uncontended cycle; and a
 * semaphore's permit cycle (`limit`) vs async-mutex's `Semaphore`, every permit in use.
 */
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
    const semaphore = new Semaphore(PERMITS);
    const permitContenders: Contender[] = [
      { name: `async-mutex Semaphore(${PERMITS}) runExclusive`, cycle: () => semaphore.runExclusive(noop) },
      {
        name: `nestjs-lock (memory) withSpaceLock limit ${PERMITS}`,
        setup: async () => {
          service = await createService({ backend: 'memory' });
        },
        cycle: () => service!.withSpaceLock('k', noop, { limit: PERMITS }),
        teardown: () => service!.beforeApplicationShutdown(),
      },
    ];
    const permitSummaries = await interleaved(permitContenders, context.reps, {
      concurrency: PERMITS,
      durationMs: context.windowMs,
      warmupMs: context.warmupMs,
    });
    const perCycle = [{ header: 'µs per cycle', value: (s: Summary) => num(1e6 / s.opsPerSec) }];
    const body = [
      summaryTable(summaries, summaries[0].name, perCycle),
      `Semaphore, ${PERMITS} in flight (every permit in use, none waiting):`,
      summaryTable(permitSummaries, permitSummaries[0].name, perCycle),
    ].join('\n\n');
    return {
      body,
      verdicts: [
        costVerdict(summaries, 'memory cycle cost ≤ 3x async-mutex runExclusive'),
        costVerdict(permitSummaries, `memory permit cycle (limit ${PERMITS}) ≤ 3x async-mutex Semaphore`),
      ],
    };
  },
};

/** Our cost per cycle against the reference's (the first summary), at most 3x. */
function costVerdict([reference, ours]: readonly Summary[], target: string): Verdict {
  const costRatio = reference.opsPerSec / ours.opsPerSec;
  return {
    scenario: '5',
    target,
    measured: `${x(costRatio)} (${num(1e6 / ours.opsPerSec)} µs vs ${num(1e6 / reference.opsPerSec)} µs per cycle)`,
    met: costRatio <= 3,
  };
}
