import { num, table, x } from '../harness/format';
import type { BenchContext, Scenario } from '../harness/context';
import { LABELS, PROPER_LOCKFILE_RETRY_MS, type LockKind } from '../harness/locks';
import { interleaved, sleep, summaryTable } from '../harness/measure';
import { hrNow } from '../harness/protocol';
import { median } from '../harness/stats';
import { startWorkers, stopWorkers } from '../harness/workers';
import { lockContender, missingRows } from './s1-uncontended-redis';
import { handoffMatrix, type HandoffVariant } from './s2-handoff-redis';

/** ms from SIGKILL of the holder to the waiting process holding the lock. */
async function crashTakeover(context: BenchContext, kind: LockKind, key: string): Promise<number> {
  const [holder, waiter] = await startWorkers([
    { task: 'hold', kind, context: context.locks, key },
    { task: 'wait-acquire', kind, context: context.locks, key, waitMs: 60_000 },
  ]);
  try {
    const held = holder.next('held');
    holder.send({ type: 'go' });
    await held;
    const got = waiter.next('got', 60_000);
    waiter.send({ type: 'go' });
    await sleep(100); // the waiter is now waiting (kernel lock / proper-lockfile retries)
    const killedAt = hrNow();
    await holder.kill('SIGKILL');
    const { at } = await got;
    return (at - killedAt) / 1e6;
  } finally {
    await stopWorkers([holder, waiter]);
  }
}

/** 4. File backend vs proper-lockfile: uncontended cycle, hand-off between processes, crash recovery. */
export const fileScenario: Scenario = {
  id: 4,
  title: 'File backend vs proper-lockfile',
  async run(context) {
    const { ready, notes } = await missingRows(['proper-lockfile', 'ours-file'], context.locks);
    const uncontended = await interleaved(
      ready.map((kind) => lockContender(kind, context.locks, () => `s4-${kind}`)),
      context.reps,
      { concurrency: 1, durationMs: context.windowMs, warmupMs: context.warmupMs },
    );
    const variant: HandoffVariant = { label: 'polite', processes: 2, workersPerProcess: 1, holdMs: 1, greedy: false };
    const handoffs = await handoffMatrix(context, ready, [variant], 's4h');
    const crash = new Map<LockKind, number[]>();
    for (const kind of ready) {
      if (kind === 'proper-lockfile') {
        if (context.quick) continue;
        // ~11 s each with the default stale period: run the repetitions side by side.
        context.log(`  crash x${context.reps} ${kind} (in parallel, ~11 s)`);
        crash.set(kind, await Promise.all(Array.from({ length: context.reps }, (_, rep) => crashTakeover(context, kind, `s4c-${rep}`))));
      } else {
        const samples: number[] = [];
        for (let rep = 0; rep < (context.quick ? 1 : context.reps); rep++) samples.push(await crashTakeover(context, kind, `s4c-${kind}-${rep}`));
        crash.set(kind, samples);
      }
    }
    const reference = uncontended.find((s) => s.name === LABELS['proper-lockfile']);
    const ours = uncontended.find((s) => s.name === LABELS['ours-file']);
    const handoffRows = ready.map((kind) => {
      const s = handoffs.get(`polite|${kind}`)!;
      const c = crash.get(kind);
      return [LABELS[kind], num(s.acquisitionsPerSec), num(s.gapP50Ms, 3), num(s.gapP99Ms, 3), num(s.gapFromCallP50Ms, 3), c ? num(median(c), 1) : 'full run only', c ? c.map((v) => num(v, 1)).join(', ') : '–'];
    });
    const body = [
      '**Uncontended acquire+release (one process, one key)**',
      '',
      summaryTable(uncontended, LABELS['proper-lockfile']),
      '',
      '**Hand-off between 2 processes (1 worker each, hold 1 ms, every acquisition a hand-off) and crash take-over (SIGKILL of the holder while another process waits)**',
      '',
      table(['contender', 'acq/s', 'hand-off p50 ms', 'p99 ms', 'p50 from release() call', 'crash → next holder, median ms', 'crash samples ms'], handoffRows),
      '',
      `proper-lockfile: defaults (stale 10 s, update 5 s), waiting callers retry every ${PROPER_LOCKFILE_RETRY_MS} ms. Ours: ${'`'}mechanism: 'auto'${'`'} (kernel OFD lock when the native addon loads).`,
      ...notes,
    ].join('\n');
    const oursHandoff = handoffs.get('polite|ours-file');
    const oursCrash = crash.get('ours-file');
    if (!ours || !reference || !oursHandoff || !oursCrash) return { body, verdicts: [{ scenario: '4', target: 'file backend', measured: 'file backend not available', met: false }] };
    const plCrash = crash.get('proper-lockfile');
    return {
      body,
      verdicts: [
        { scenario: '4', target: 'uncontended ≥ 20x proper-lockfile', measured: x(ours.opsPerSec / reference.opsPerSec), met: ours.opsPerSec >= 20 * reference.opsPerSec },
        {
          scenario: '4',
          target: 'hand-off between processes: median ≤ 2 ms',
          measured: `${num(oursHandoff.gapP50Ms, 3)} ms (${num(oursHandoff.gapFromCallP50Ms, 3)} ms from the release() call)`,
          met: oursHandoff.gapP50Ms <= 2,
        },
        {
          scenario: '4',
          target: 'SIGKILL of the holder → next holder ≤ 50 ms',
          measured: `${num(median(oursCrash), 1)} ms${plCrash ? ` (proper-lockfile ${num(median(plCrash) / 1000, 1)} s)` : ''}`,
          met: median(oursCrash) <= 50,
        },
      ],
    };
  },
};
