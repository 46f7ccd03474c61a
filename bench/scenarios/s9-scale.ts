import { num, table, x } from '../harness/format';
import type { BenchContext, Scenario } from '../harness/context';
import { LABELS, type LockKind } from '../harness/locks';
import { sleep, summarize, type Summary, type Window } from '../harness/measure';
import { redisProbe } from '../harness/redis-server';
import { Samples } from '../harness/stats';
import { releaseWorkers, startWorkers, stopWorkers } from '../harness/workers';
import { lockContender, missingRows } from './s1-uncontended-redis';
import { closedLoop } from '../harness/measure';

const ANCHORS: readonly LockKind[] = ['redlock', 'redis-semaphore'];

/** One window of `depth` cycles in flight, split over `processes` worker processes. */
async function workerWindow(context: BenchContext, kind: LockKind, processes: number, depth: number): Promise<Window> {
  const workers = await startWorkers(
    Array.from({ length: processes }, () => ({
      task: 'loop' as const,
      kind,
      context: context.locks,
      concurrency: depth / processes,
      keyPrefix: `s9:${kind}`,
      warmupMs: context.warmupMs,
      durationMs: context.windowMs,
    })),
  );
  let done = false;
  try {
    const probe = redisProbe(context.admin, () => 0);
    const results = workers.map((worker) => worker.next('result', 60_000));
    for (const worker of workers) worker.send({ type: 'go' });
    await sleep(context.warmupMs);
    await probe.start();
    const answers = await Promise.all(results);
    const loops = answers.map((answer) => answer.loop!);
    const ops = loops.reduce((sum, loop) => sum + loop.ops, 0);
    const elapsedMs = Math.max(...loops.map((loop) => loop.elapsedMs));
    const extra = await probe.finish(ops, elapsedMs);
    extra.sentPerOp = answers.reduce((sum, answer) => sum + (answer.sentCommands ?? 0), 0) / Math.max(1, ops);
    const latencies = new Samples();
    for (const loop of loops) latencies.pushAll(loop.latencies);
    done = true;
    return { ops, elapsedMs, cpuUs: loops.reduce((sum, loop) => sum + loop.cpuUs, 0), latencies, extra };
  } finally {
    if (done) releaseWorkers(workers);
    else await stopWorkers(workers);
  }
}

/** 9. Throughput with 1, 16 and 256 independent keys in flight, from one process and from two. */
export const scaleScenario: Scenario = {
  id: 9,
  title: 'Scale with concurrency: independent keys in flight, Redis',
  async run(context) {
    const { ready, notes } = await missingRows(['floor', 'redis-semaphore', 'redlock', 'ours-redis'], context.locks);
    // A quick run spawns no worker processes here (~6 s of its minute); scenario 2 covers that path.
    const configs = [
      { depth: 1, processes: 1 },
      { depth: 16, processes: 1 },
      { depth: 256, processes: 1 },
      { depth: 16, processes: 2 },
      { depth: 256, processes: 2 },
    ].filter((config) => !context.quick || config.processes === 1);
    const rows: (string | number)[][] = [];
    const verdictParts: string[] = [];
    let allMet = true;
    const oursByConfig: { label: string; ours: Summary }[] = [];
    for (const { depth, processes } of configs) {
      context.log(`  depth ${depth} x ${processes} process(es)`);
      const windows = new Map<LockKind, Window[]>(ready.map((kind) => [kind, []]));
      const contenders = new Map(ready.map((kind) => [kind, lockContender(kind, context.locks, (loop) => `s9:${kind}:${loop}`)]));
      if (processes === 1) for (const contender of contenders.values()) await contender.setup?.();
      try {
        for (let rep = 0; rep < context.reps; rep++) {
          for (let i = 0; i < ready.length; i++) {
            const kind = ready[(i + rep) % ready.length];
            const contender = contenders.get(kind)!;
            windows.get(kind)!.push(
              processes === 1
                ? await closedLoop((loop) => contender.cycle(loop), {
                    concurrency: depth,
                    durationMs: context.windowMs,
                    warmupMs: context.warmupMs,
                    probe: redisProbe(context.admin),
                  })
                : await workerWindow(context, kind, processes, depth),
            );
          }
        }
      } finally {
        if (processes === 1) for (const contender of contenders.values()) await contender.teardown?.();
      }
      const summaries = new Map<LockKind, Summary>(ready.map((kind) => [kind, summarize(LABELS[kind], windows.get(kind)!)]));
      const bestAnchor = Math.max(...ANCHORS.filter((kind) => summaries.has(kind)).map((kind) => summaries.get(kind)!.opsPerSec));
      for (const kind of ready) {
        const s = summaries.get(kind)!;
        rows.push([
          String(depth),
          String(processes),
          s.name,
          s.opsPerSec,
          s.p50Ms,
          s.p99Ms,
          s.cpuUsPerOp,
          num(s.extra.sentPerOp, 2),
          `${num(s.extra.redisCpuPct, 0)}%`,
          num(s.extra.redisCpuUsPerOp),
          x(s.opsPerSec / bestAnchor),
        ]);
      }
      const ours = summaries.get('ours-redis');
      if (ours) {
        oursByConfig.push({ label: `${depth}x${processes}p`, ours });
        const ratio = ours.opsPerSec / bestAnchor;
        verdictParts.push(`${depth} in flight/${processes}p ${x(ratio)}`);
        if (ratio < 1) allMet = false;
      }
    }
    const body = [
      table(
        ['in flight', 'processes', 'contender', 'ops/s', 'p50 ms', 'p99 ms', 'Node CPU µs/op', 'commands sent/op', 'Redis CPU', 'Redis CPU µs/op', 'x best anchor'],
        rows,
      ),
      '',
      'Node CPU per op is the sum over the processes running the contender; Redis CPU is INFO cpu (user+sys) over the window, 100% = one core (Redis executes commands on one thread).',
      ...notes,
    ].join('\n');
    if (oursByConfig.length === 0) return { body, verdicts: [{ scenario: '9', target: '≥ 1.0x best anchor at every depth', measured: 'redis backend not available', met: false }] };
    const saturated = oursByConfig.find((c) => c.ours.extra.redisCpuPct >= 90);
    const limit = saturated
      ? `Redis CPU reaches ${num(saturated.ours.extra.redisCpuPct, 0)}% at ${saturated.label}`
      : `Redis CPU never reached 90% (max ${num(Math.max(...oursByConfig.map((c) => c.ours.extra.redisCpuPct)), 0)}%): Node on its one CPU is the limit on this machine`;
    const rising = oursByConfig.filter((c) => c.label.endsWith('1p')).map((c) => `${c.label}: ${num(c.ours.opsPerSec)} ops/s at ${num(c.ours.extra.redisCpuPct, 0)}% Redis CPU, ${num(c.ours.extra.redisCpuUsPerOp)} µs Redis CPU/cycle`);
    return {
      body,
      verdicts: [
        { scenario: '9', target: '≥ 1.0x the best anchor at every depth', measured: verdictParts.join('; '), met: allMet },
        { scenario: '9', target: 'throughput rises with depth until Redis CPU is the limit', measured: `${rising.join('; ')}. ${limit}`, met: null },
      ],
    };
  },
};
