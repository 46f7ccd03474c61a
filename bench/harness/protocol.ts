import type { LockContext, LockKind } from './locks';

/** What the parent asks a worker process to do (bench/worker.ts). */
export type Task =
  | { task: 'loop'; kind: LockKind; context: LockContext; concurrency: number; keyPrefix: string; warmupMs: number; durationMs: number }
  | {
      task: 'handoff';
      kind: LockKind;
      context: LockContext;
      key: string;
      /** Global ids of this process's workers. */
      workerIds: number[];
      holdMs: number;
      /** false: after releasing, wait until another worker acquired (every acquisition is a hand-off). */
      greedy: boolean;
      durationMs: number;
    }
  | { task: 'hold'; kind: LockKind; context: LockContext; key: string }
  | { task: 'wait-acquire'; kind: LockKind; context: LockContext; key: string; waitMs: number }
  | { task: 'http'; backend: 'memory' | 'redis'; context: LockContext };

/** One acquisition in a hand-off run; times are `process.hrtime.bigint()` ns as numbers (CLOCK_MONOTONIC: one clock for all processes of the host). */
export interface Acquisition {
  worker: number;
  pid: number;
  acquiredAt: number;
  releaseCalledAt: number;
  releasedAt: number;
}

export interface LoopResult {
  ops: number;
  elapsedMs: number;
  cpuUs: number;
  latencies: number[];
}

export type ToWorker = { type: 'run'; task: Task } | { type: 'go' } | { type: 'acquired'; worker: number; seq: number } | { type: 'stop' };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'acquired'; worker: number }
  | { type: 'held'; at: number }
  | { type: 'got'; at: number }
  | { type: 'listening'; port: number }
  | { type: 'result'; loop?: LoopResult; acquisitions?: Acquisition[]; sentCommands?: number }
  | { type: 'error'; message: string };

export function hrNow(): number {
  return Number(process.hrtime.bigint());
}
