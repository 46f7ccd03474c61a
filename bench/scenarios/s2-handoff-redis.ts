import { num, table, x } from '../harness/format';
import type { BenchContext, Scenario } from '../harness/context';
import { runHandoff, summarizeHandoff, type HandoffRun, type HandoffSummary } from '../harness/handoff';
import { LABELS, type LockKind } from '../harness/locks';
import type { WindowProbe } from '../harness/measure';
import { pingRoundTripMs } from '../harness/redis-server';
import { missingRows } from './s1-uncontended-redis';

export interface HandoffVariant {
  label: string;
  processes: number;
  workersPerProcess: number;
  holdMs: number;
  greedy: boolean;
}

/** Interleaved repetitions of hand-off runs: every (variant, kind) once per repetition. */
export async function handoffMatrix(
  context: BenchContext,
  kinds: readonly LockKind[],
  variants: readonly HandoffVariant[],
  key: string,
  probe?: () => WindowProbe,
): Promise<Map<string, HandoffSummary>> {
  const durationMs = context.quick ? 300 : 2_000;
  const cells = variants.flatMap((variant) => kinds.map((kind) => ({ variant, kind })));
  const runs = new Map<string, HandoffRun[]>(cells.map((cell) => [`${cell.variant.label}|${cell.kind}`, []]));
  const reps = context.quick ? 1 : context.reps;
  const retried: string[] = [];
  for (let rep = 0; rep < reps; rep++) {
    for (let i = 0; i < cells.length; i++) {
      const { variant, kind } = cells[(i + rep) % cells.length];
      context.log(`  rep ${rep + 1}/${reps} ${variant.label} ${kind}`);
      // A quick run's grace is short so a stuck anchor run and its retry keep `--quick` under a
      // minute (workers normally report within milliseconds of the window's end).
      const options = { kind, context: context.locks, key: `${key}:${kind}:${rep}`, ...variant, durationMs, warmupMs: context.quick ? 100 : 200, graceMs: context.quick ? 3_000 : 30_000 };
      let run: HandoffRun;
      try {
        run = await runHandoff({ ...options, probe: probe?.() });
      } catch (error) {
        // A stuck run (seen rarely with proper-lockfile's retry loop) must not sink the scenario.
        context.log(`  ${variant.label} ${kind} failed (${error instanceof Error ? error.message : String(error)}); retrying once with fresh workers`);
        retried.push(`${LABELS[kind]} (${variant.label})`);
        run = await runHandoff({ ...options, key: `${options.key}:retry`, probe: probe?.() });
      }
      runs.get(`${variant.label}|${kind}`)!.push(run);
    }
  }
  if (retried.length > 0) context.log(`  retried: ${retried.join(', ')}`);
  return new Map([...runs].map(([cell, list]) => [cell, summarizeHandoff(list)]));
}

export function handoffTable(summaries: Map<string, HandoffSummary>, kinds: readonly LockKind[], variants: readonly HandoffVariant[], unitMs: number, unitName: string): string {
  const rows = variants.flatMap((variant) =>
    kinds.map((kind) => {
      const s = summaries.get(`${variant.label}|${kind}`)!;
      return [
        LABELS[kind],
        variant.label,
        num(s.acquisitionsPerSec),
        num(s.gapP50Ms, 3),
        num(s.gapP99Ms, 3),
        num(s.gapFromCallP50Ms, 3),
        `${Math.round(s.crossShare * 100)}%`,
        num(s.crossGapP50Ms, 3),
        num(s.crossGapP99Ms, 3),
        num(s.crossFromCallP50Ms, 3),
        x(s.crossGapP50Ms / unitMs),
        Number.isFinite(s.split) ? num(s.split, 2) : s.split === Infinity ? '∞ (starved)' : '–',
        String(s.overlaps),
      ];
    }),
  );
  return table(
    ['contender', 'variant', 'acq/s', 'hand-off p50 ms', 'p99 ms', 'p50 from release() call', 'cross-process', 'cross p50 ms', 'cross p99 ms', 'cross p50 from call', `cross p50 / ${unitName}`, 'split max/min', 'overlaps'],
    rows,
  );
}

export const HANDOFF_NOTE =
  'Negative hand-off: the next holder had the lock before the releasing one heard back from its release(). Hand-off = time from the previous holder\'s `release()` resolving to the next holder\'s `acquire()` resolving (CLOCK_MONOTONIC, shared by the processes); "from release() call" starts when the holder calls release. "cross" counts only hand-offs between processes. Split = most / fewest acquisitions per worker.';

/** 2. Hand-off under contention on Redis: 2 processes x 2 workers on one key, hold 1 ms. */
export const handoffRedisScenario: Scenario = {
  id: 2,
  title: 'Hand-off under contention, Redis (2 processes x 2 workers, one key, hold 1 ms)',
  async run(context) {
    const { ready, notes } = await missingRows(['ours-redis', 'redis-semaphore', 'redlock'], context.locks);
    const variants: HandoffVariant[] = [
      { label: 'polite', processes: 2, workersPerProcess: 2, holdMs: 1, greedy: false },
      { label: 'greedy', processes: 2, workersPerProcess: 2, holdMs: 1, greedy: true },
    ];
    const pingBefore = await pingRoundTripMs(context.admin);
    const summaries = await handoffMatrix(context, ready, variants, 's2');
    const ping = (pingBefore + (await pingRoundTripMs(context.admin))) / 2;
    const body = [
      `PING round trip (median, same run): ${num(ping, 3)} ms.`,
      '',
      handoffTable(summaries, ready, variants, ping, 'PING'),
      '',
      HANDOFF_NOTE,
      ...notes,
    ].join('\n');
    const polite = summaries.get('polite|ours-redis');
    const greedy = summaries.get('greedy|ours-redis');
    if (!polite || !greedy) return { body, verdicts: [{ scenario: '2', target: 'hand-off ≤ 2x PING', measured: 'redis backend not available', met: false }] };
    return {
      body,
      verdicts: [
        {
          scenario: '2',
          target: 'median hand-off ≤ 2x PING round trip',
          measured: `cross-process ${num(polite.crossGapP50Ms, 3)} ms = ${x(polite.crossGapP50Ms / ping)} PING (${num(polite.crossFromCallP50Ms, 3)} ms = ${x(polite.crossFromCallP50Ms / ping)} from the release() call); all hand-offs ${num(polite.gapP50Ms, 3)} ms (${Math.round((1 - polite.crossShare) * 100)}% passed inside a process)`,
          met: polite.crossGapP50Ms <= 2 * ping,
        },
        {
          scenario: '2',
          target: 'greedy split max/min ≤ 1.5',
          measured: Number.isFinite(greedy.split) ? num(greedy.split, 2) : 'a worker starved',
          met: greedy.split <= 1.5,
        },
      ],
    };
  },
};
