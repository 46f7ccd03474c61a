import { spawn } from 'node:child_process';
import Redis from 'ioredis';
import type { BenchContext, Scenario, ScenarioResult } from './context';
import type { Placement } from './redis-server';
import { stopIdleWorkers } from './workers';

/**
 * Every scenario runs in a fresh Node process (the runner's redis-server, placement and
 * scratch directory shared). In one long-lived process the JIT feedback and the heap left by
 * the scenarios before skewed the in-process rows: scenario 5 read 3.85 µs vs 0.78 µs per
 * cycle there and 2.59 µs vs 1.07 µs alone. Both contenders of a scenario still share its
 * process and run interleaved.
 */
const CHILD_ENV = 'NESTJS_LOCK_BENCH_SCENARIO';
const RESULT_MARK = '@@scenario-result ';

interface ChildSpec {
  id: number;
  quick: boolean;
  reps: number;
  windowMs: number;
  warmupMs: number;
  placement: Placement;
  tmpDir: string;
  redisUrl: string;
  fileDir: string;
  ttlMs: number;
}

/** Runs `scenario` in a child process of this script and returns what it measured. */
export function runIsolated(scenario: Scenario, context: BenchContext, script: string): Promise<ScenarioResult> {
  const spec: ChildSpec = {
    id: scenario.id,
    quick: context.quick,
    reps: context.reps,
    windowMs: context.windowMs,
    warmupMs: context.warmupMs,
    placement: context.placement,
    tmpDir: context.tmpDir,
    redisUrl: context.locks.redisUrl ?? '',
    fileDir: context.locks.fileDir ?? '',
    ttlMs: context.locks.ttlMs,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', script], {
      env: { ...process.env, [CHILD_ENV]: JSON.stringify(spec) },
      // The child's log lines go straight to our stderr.
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const line = output.split('\n').find((candidate) => candidate.startsWith(RESULT_MARK));
      if (line) resolve(JSON.parse(line.slice(RESULT_MARK.length)) as ScenarioResult);
      else reject(new Error(`scenario ${scenario.id} process ended (${signal ?? `exit ${code}`}) without a result`));
    });
  });
}

/** In a child started by `runIsolated`: the scenario to run, else `null`. */
export function childSpec(): ChildSpec | null {
  const raw = process.env[CHILD_ENV];
  return raw ? (JSON.parse(raw) as ChildSpec) : null;
}

export async function runChild(spec: ChildSpec, scenarios: readonly Scenario[], log: (message: string) => void): Promise<void> {
  const scenario = scenarios.find((candidate) => candidate.id === spec.id);
  if (!scenario) throw new Error(`no scenario ${spec.id}`);
  const admin = new Redis(spec.redisUrl, { enableAutoPipelining: false });
  const context: BenchContext = {
    quick: spec.quick,
    reps: spec.reps,
    windowMs: spec.windowMs,
    warmupMs: spec.warmupMs,
    admin,
    placement: spec.placement,
    tmpDir: spec.tmpDir,
    locks: { redisUrl: spec.redisUrl, fileDir: spec.fileDir, ttlMs: spec.ttlMs },
    log,
  };
  try {
    const result = await scenario.run(context);
    process.stdout.write(`\n${RESULT_MARK}${JSON.stringify(result)}\n`);
  } finally {
    admin.disconnect();
    await stopIdleWorkers();
  }
}
