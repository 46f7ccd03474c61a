import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { killAll, spawnTs, waitForLine } from '../support/processes';
import type { CliIo } from '../../lib/cli/commands';
import type { WorkerConfig } from './fixtures/lock-worker';

const CLI = join('lib', 'cli', 'main.ts');
const WORKER = join('test', 'ops', 'fixtures', 'lock-worker.ts');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

/** Run the `nestjs-lock` CLI from source as its own process (stdin not a terminal). */
export async function runCliProcess(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const started = performance.now();
  const child = spawnTs(CLI, args, env);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.on('data', (chunk: string) => (stderr += chunk));
  // 'close', not 'exit': only then has all of the output arrived.
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode: number | null) => resolve(exitCode)));
  return { code, stdout, stderr, elapsedMs: performance.now() - started };
}

/** Workers started by a suite; `stopWorkers()` in `afterEach` kills exactly these. */
const workers: ChildProcess[] = [];

export function startWorker(config: WorkerConfig): ChildProcess {
  const child = spawnTs(WORKER, [JSON.stringify(config)]);
  workers.push(child);
  return child;
}

/** Start a worker that holds `keys` and resolve once it holds them all. */
export async function startHolder(config: Omit<WorkerConfig, 'task'>, keys: string[]): Promise<ChildProcess> {
  const child = startWorker({ ...config, task: { kind: 'hold', keys } });
  await waitForLine(child, /^ready /);
  return child;
}

export async function stopWorkers(): Promise<void> {
  await killAll(workers.splice(0));
}

/** The worker's `held KEY FENCING-TOKEN WAITED-MS` line. */
export function heldPattern(key: string): RegExp {
  return new RegExp(`^held ${escape(key)} (\\d+) (\\d+)$`);
}

export function lostPattern(key: string): RegExp {
  return new RegExp(`^lost ${escape(key)} (\\S+)$`);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A per-test key prefix so suites and tests never see each other's locks. */
let counter = 0;
export function uniquePrefix(suite: string): string {
  counter += 1;
  return `ops-${suite}-${process.pid}-${counter}:`;
}

/** In-process CLI I/O that records what was printed and answers prompts with `answer`. */
export function recordingIo(options: { interactive?: boolean; answer?: boolean } = {}): CliIo & {
  stdout: string;
  stderr: string;
  questions: string[];
} {
  const io = {
    stdout: '',
    stderr: '',
    questions: [] as string[],
    interactive: options.interactive ?? false,
    env: {},
    out: (text: string) => void (io.stdout += text),
    err: (text: string) => void (io.stderr += text),
    confirm: async (question: string) => {
      io.questions.push(question);
      return options.answer ?? false;
    },
  };
  return io;
}
