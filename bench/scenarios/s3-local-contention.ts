import { num, table, x } from '../harness/format';
import type { Scenario } from '../harness/context';
import { LABELS } from '../harness/locks';
import { redisProbe } from '../harness/redis-server';
import { handoffMatrix, type HandoffVariant } from './s2-handoff-redis';
import { missingRows } from './s1-uncontended-redis';

/**
 * 3. Same-process contention: 4 workers of ONE process on one key, each waiting for
 * another to have had it before asking again (every acquisition is a hand-off).
 */
export const localContentionScenario: Scenario = {
  id: 3,
  title: 'Same-process contention on one key, Redis (1 process x 4 workers, hold 1 ms)',
  async run(context) {
    const { ready, notes } = await missingRows(['ours-redis', 'redis-semaphore'], context.locks);
    const variant: HandoffVariant = { label: 'polite', processes: 1, workersPerProcess: 4, holdMs: 1, greedy: false };
    const summaries = await handoffMatrix(context, ready, [variant], 's3', () => redisProbe(context.admin));
    const reference = summaries.get(`polite|redis-semaphore`);
    const rows = ready.map((kind) => {
      const s = summaries.get(`polite|${kind}`)!;
      return [
        LABELS[kind],
        num(s.acquisitionsPerSec),
        num(s.gapFromCallP50Ms, 3),
        num(s.gapP50Ms, 3),
        num(s.gapP99Ms, 3),
        num(s.extra.sentPerOp, 2),
        num(s.extra.redisCmdsPerOp, 2),
        num(s.extra.redisCpuUsPerOp),
        reference ? x(s.acquisitionsPerSec / reference.acquisitionsPerSec) : '–',
        num(s.split, 2),
      ];
    });
    const body = [
      table(
        ['contender', 'acq/s', 'hand-off p50 from release() call, ms', 'from release() resolved p50', 'p99', 'commands sent/acq', 'Redis cmds/acq (incl. inside Lua)', 'Redis CPU µs/acq', 'x redis-semaphore', 'split max/min'],
        rows,
      ),
      '',
      'Our in-process queue hands the lease to the next local waiter with one `handOver` script (new token, new fencing token) instead of release + acquire; every `maxLocalHandoffs` (8) hand-offs it releases to the store so other processes get a turn.',
      ...notes,
    ].join('\n');
    const ours = summaries.get('polite|ours-redis');
    if (!ours || !reference) return { body, verdicts: [] };
    return {
      body,
      verdicts: [
        {
          scenario: '3',
          target: 'local hand-off: no round trip beyond the lease (1 script per hand-off); gain vs redis-semaphore',
          measured: `${x(ours.acquisitionsPerSec / reference.acquisitionsPerSec)} redis-semaphore's hand-offs/s; ${num(ours.extra.sentPerOp, 2)} commands sent per acquisition (${num(reference.extra.sentPerOp, 2)} for redis-semaphore)`,
          met: ours.acquisitionsPerSec > reference.acquisitionsPerSec,
        },
      ],
    };
  },
};
