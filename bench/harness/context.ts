import type Redis from 'ioredis';
import type { Verdict } from './format';
import type { LockContext } from './locks';
import type { Placement } from './redis-server';

/** What every scenario gets from the runner. */
export interface BenchContext {
  quick: boolean;
  /** Interleaved repetitions per measurement (median taken). */
  reps: number;
  /** Length of one measured window of a closed loop. */
  windowMs: number;
  warmupMs: number;
  /** Connection for INFO / PING, never used by a contender. */
  admin: Redis;
  placement: Placement;
  /** Scratch directory, removed at the end. */
  tmpDir: string;
  locks: LockContext;
  log(message: string): void;
}

export interface ScenarioResult {
  /** Markdown: tables and notes. */
  body: string;
  verdicts: Verdict[];
}

export interface Scenario {
  id: number;
  title: string;
  run(context: BenchContext): Promise<ScenarioResult>;
}
