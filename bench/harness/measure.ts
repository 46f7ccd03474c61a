import { performance } from 'node:perf_hooks';
import { median, Samples } from './stats';
import { table, x, type Cell } from './format';

/** One measured window of a closed loop. */
export interface Window {
  ops: number;
  elapsedMs: number;
  /** Node CPU (user + system) of this process during the window, microseconds. */
  cpuUs: number;
  latencies: Samples;
  /** Anything extra a scenario measured over the same window (Redis CPU, ...). */
  extra: Record<string, number>;
}

export interface LoopOptions {
  /** Loops running at once (each waits for its own previous cycle). */
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  /** Stop early after this many cycles (all loops together). */
  maxOps?: number;
  /** Called right before and right after the measured window (e.g. INFO snapshots). */
  probe?: WindowProbe;
}

export interface WindowProbe {
  start(): Promise<void>;
  /** Extra numbers for the window, given its op count and duration. */
  finish(ops: number, elapsedMs: number): Promise<Record<string, number>>;
}

/**
 * Run `cycle(loopIndex)` in `concurrency` closed loops for `durationMs` after a warm-up and
 * return throughput, per-cycle latency and Node CPU for the measured part.
 */
export async function closedLoop(cycle: (loop: number) => Promise<unknown>, options: LoopOptions): Promise<Window> {
  const latencies = new Samples();
  let measuring = false;
  let stopping = false;
  let ops = 0;
  const loop = async (index: number): Promise<void> => {
    let count = 0;
    while (!stopping) {
      // Cycles that settle in microtasks only would starve timers (and the window's end).
      if ((++count & 63) === 0) await new Promise(setImmediate);
      const started = performance.now();
      await cycle(index);
      if (measuring) {
        latencies.push(performance.now() - started);
        ops += 1;
        if (options.maxOps !== undefined && ops >= options.maxOps) stopping = true;
      }
    }
  };
  const loops = Array.from({ length: options.concurrency }, (_, index) => loop(index));
  const failed = Promise.race(loops).then(() => undefined);
  await Promise.race([sleep(options.warmupMs), failed]);
  await options.probe?.start();
  const cpu = process.cpuUsage();
  const started = performance.now();
  measuring = true;
  await Promise.race([sleep(options.durationMs), failed]);
  measuring = false;
  const elapsedMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  const measuredOps = ops;
  const extra = (await options.probe?.finish(measuredOps, elapsedMs)) ?? {};
  stopping = true;
  await Promise.all(loops);
  return { ops: measuredOps, elapsedMs, cpuUs: used.user + used.system, latencies, extra };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Summary of several windows of one contender: medians across repetitions. */
export interface Summary {
  name: string;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerOp: number;
  extra: Record<string, number>;
  reps: number;
}

export function summarize(name: string, windows: readonly Window[]): Summary {
  const extraKeys = new Set(windows.flatMap((window) => Object.keys(window.extra)));
  const extra: Record<string, number> = {};
  for (const key of extraKeys) extra[key] = median(windows.map((window) => window.extra[key] ?? NaN));
  return {
    name,
    opsPerSec: median(windows.map((w) => (w.ops * 1000) / w.elapsedMs)),
    p50Ms: median(windows.map((w) => w.latencies.percentile(50))),
    p99Ms: median(windows.map((w) => w.latencies.percentile(99))),
    cpuUsPerOp: median(windows.map((w) => (w.ops === 0 ? NaN : w.cpuUs / w.ops))),
    extra,
    reps: windows.length,
  };
}

/** A thing to measure in a closed loop. `setup` runs once, before any repetition. */
export interface Contender {
  name: string;
  setup?(): Promise<void>;
  cycle(loop: number): Promise<unknown>;
  teardown?(): Promise<void>;
}

/**
 * Interleaved repetitions: rep 1 runs every contender once, rep 2 again (rotated start), ...
 * so slow drifts of a noisy machine hit every row alike. Returns one summary per contender.
 */
export async function interleaved(
  contenders: readonly Contender[],
  reps: number,
  loop: Omit<LoopOptions, 'probe'> & { probe?: (contender: Contender) => WindowProbe | undefined },
): Promise<Summary[]> {
  for (const contender of contenders) await contender.setup?.();
  const windows = contenders.map(() => [] as Window[]);
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (let i = 0; i < contenders.length; i++) {
        const index = (i + rep) % contenders.length;
        const contender = contenders[index];
        windows[index].push(await closedLoop((n) => contender.cycle(n), { ...loop, probe: loop.probe?.(contender) }));
      }
    }
  } finally {
    for (const contender of contenders) await contender.teardown?.();
  }
  return contenders.map((contender, index) => summarize(contender.name, windows[index]));
}

export interface ExtraColumn {
  header: string;
  value: (summary: Summary) => Cell;
}

/** The standard table: ops/s, p50/p99, Node CPU per op, ratio to the reference row. */
export function summaryTable(summaries: readonly Summary[], referenceName: string, extraColumns: readonly ExtraColumn[] = []): string {
  const reference = summaries.find((s) => s.name === referenceName);
  const headers = ['contender', 'ops/s', 'p50 ms', 'p99 ms', 'Node CPU µs/op', `x ${referenceName}`, ...extraColumns.map((c) => c.header)];
  const rows = summaries.map((s) => [
    s.name === referenceName ? `${s.name} (ref)` : s.name,
    s.opsPerSec,
    s.p50Ms,
    s.p99Ms,
    s.cpuUsPerOp,
    reference ? x(s.opsPerSec / reference.opsPerSec) : '–',
    ...extraColumns.map((c) => c.value(s)),
  ]);
  return table(headers, rows);
}
