import type { LockContext, LockKind } from './locks';
import type { WindowProbe } from './measure';
import { hrNow, type Acquisition } from './protocol';
import { median, percentile } from './stats';
import { releaseWorkers, startWorkers, stopWorkers } from './workers';

export interface HandoffOptions {
  kind: LockKind;
  context: LockContext;
  key: string;
  processes: number;
  workersPerProcess: number;
  holdMs: number;
  greedy: boolean;
  /** Measured part, after `warmupMs`. */
  durationMs: number;
  warmupMs: number;
  /** How long after the run's end a worker may still be finishing before the run fails. Default 30 s. */
  graceMs?: number;
  /** Snapshots around the whole run (warm-up included); `ops` = every acquisition. */
  probe?: WindowProbe;
}

/** One hand-off run: every acquisition of the measured window, in order. */
export interface HandoffRun {
  acquisitions: Acquisition[];
  elapsedMs: number;
  /** ms from one release() resolving to the next acquire() resolving (any worker). */
  gapsMs: number[];
  /** ms from one release() being called to the next acquire() resolving. */
  gapsFromCallMs: number[];
  /** `gapsMs` / `gapsFromCallMs` of hand-offs between processes only. */
  crossGapsMs: number[];
  crossFromCallMs: number[];
  /** Hand-offs between workers of different processes / of the same process. */
  crossProcess: number;
  sameProcess: number;
  /** Next acquire resolved before the previous release was even called: mutual exclusion broken. */
  overlaps: number;
  perWorker: number[];
  /** From `probe`, over the whole run. */
  extra: Record<string, number>;
}

/**
 * Run `processes` x `workersPerProcess` workers on one key (bench/worker.ts 'handoff' task).
 * The parent relays every acquisition to all workers, numbered, so a polite worker can wait
 * until someone else has had the lock. Times come from CLOCK_MONOTONIC, shared by processes.
 */
export async function runHandoff(options: HandoffOptions): Promise<HandoffRun> {
  const workerCount = options.processes * options.workersPerProcess;
  const workers = await startWorkers(
    Array.from({ length: options.processes }, (_, p) => ({
      task: 'handoff' as const,
      kind: options.kind,
      context: options.context,
      key: options.key,
      workerIds: Array.from({ length: options.workersPerProcess }, (_, w) => p * options.workersPerProcess + w),
      holdMs: options.holdMs,
      greedy: options.greedy,
      durationMs: options.warmupMs + options.durationMs,
    })),
  );
  const unsubscribe: (() => void)[] = [];
  let finished = false;
  try {
    let seq = 0;
    for (const worker of workers) {
      unsubscribe.push(worker.on((message) => {
        if (message.type !== 'acquired') return;
        const broadcast = { type: 'acquired' as const, worker: message.worker, seq: seq++ };
        for (const other of workers) other.send(broadcast);
      }));
    }
    const results = workers.map((worker) => worker.next('result', options.warmupMs + options.durationMs + (options.graceMs ?? 30_000)));
    await options.probe?.start();
    const goAt = hrNow();
    for (const worker of workers) worker.send({ type: 'go' });
    const answers = await Promise.all(results);
    const all = answers.flatMap((result) => result.acquisitions ?? []);
    const extra = (await options.probe?.finish(all.length, (hrNow() - goAt) / 1e6)) ?? {};
    extra.sentPerOp = answers.reduce((sum, answer) => sum + (answer.sentCommands ?? 0), 0) / Math.max(1, all.length);
    const from = goAt + options.warmupMs * 1e6;
    const to = from + options.durationMs * 1e6;
    all.sort((a, b) => a.acquiredAt - b.acquiredAt);
    const inWindow = all.filter((a) => a.acquiredAt >= from && a.acquiredAt < to);
    const run: HandoffRun = {
      acquisitions: inWindow,
      elapsedMs: options.durationMs,
      gapsMs: [],
      gapsFromCallMs: [],
      crossGapsMs: [],
      crossFromCallMs: [],
      crossProcess: 0,
      sameProcess: 0,
      overlaps: 0,
      perWorker: Array.from({ length: workerCount }, () => 0),
      extra,
    };
    for (const acquisition of inWindow) run.perWorker[acquisition.worker] += 1;
    for (let i = 1; i < all.length; i++) {
      const previous = all[i - 1];
      const next = all[i];
      if (next.acquiredAt < previous.releaseCalledAt) run.overlaps += 1;
      if (next.acquiredAt < from || next.acquiredAt >= to) continue;
      run.gapsMs.push((next.acquiredAt - previous.releasedAt) / 1e6);
      run.gapsFromCallMs.push((next.acquiredAt - previous.releaseCalledAt) / 1e6);
      if (next.pid === previous.pid) run.sameProcess += 1;
      else {
        run.crossProcess += 1;
        run.crossGapsMs.push((next.acquiredAt - previous.releasedAt) / 1e6);
        run.crossFromCallMs.push((next.acquiredAt - previous.releaseCalledAt) / 1e6);
      }
    }
    finished = true;
    return run;
  } finally {
    unsubscribe.forEach((off) => off());
    if (finished) releaseWorkers(workers);
    else await stopWorkers(workers);
  }
}

export interface HandoffSummary {
  acquisitionsPerSec: number;
  gapP50Ms: number;
  gapP99Ms: number;
  gapFromCallP50Ms: number;
  crossGapP50Ms: number;
  crossGapP99Ms: number;
  crossShare: number;
  /** max/min acquisitions per worker (Infinity when one worker never got the lock). */
  split: number;
  overlaps: number;
  crossFromCallP50Ms: number;
  extra: Record<string, number>;
}

/** Median over repetitions of each run's statistics. */
export function summarizeHandoff(runs: readonly HandoffRun[]): HandoffSummary {
  const stat = (pick: (run: HandoffRun) => number): number => median(runs.map(pick));
  return {
    acquisitionsPerSec: stat((r) => (r.acquisitions.length * 1000) / r.elapsedMs),
    gapP50Ms: stat((r) => percentile([...r.gapsMs], 50)),
    gapP99Ms: stat((r) => percentile([...r.gapsMs], 99)),
    gapFromCallP50Ms: stat((r) => percentile([...r.gapsFromCallMs], 50)),
    crossGapP50Ms: stat((r) => percentile([...r.crossGapsMs], 50)),
    crossGapP99Ms: stat((r) => percentile([...r.crossGapsMs], 99)),
    crossShare: stat((r) => r.crossProcess / Math.max(1, r.crossProcess + r.sameProcess)),
    split: stat((r) => {
      const max = Math.max(...r.perWorker);
      const min = Math.min(...r.perWorker);
      return min === 0 ? (max === 0 ? NaN : Infinity) : max / min;
    }),
    overlaps: runs.reduce((sum, r) => sum + r.overlaps, 0),
    crossFromCallP50Ms: stat((r) => percentile([...r.crossFromCallMs], 50)),
    extra: Object.fromEntries(Object.keys(runs[0]?.extra ?? {}).map((key) => [key, stat((r) => r.extra[key])])),
  };
}
