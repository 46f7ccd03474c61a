import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');

/** Start a TypeScript file in its own Node process (ts-node, transpile only). */
export function spawnTs(file: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', file, ...args], {
    cwd: ROOT,
    env: { ...process.env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (process.env.DEBUG_CHILDREN) process.stderr.write(`[child ${child.pid}] ${chunk}`);
  });
  return child;
}

/**
 * How long a test waits for a child's line by default: starting a ts-node process takes
 * seconds, and minutes on a saturated 2-core machine (seen: over 90 s). Only a hang should hit it.
 */
export const CHILD_LINE_TIMEOUT_MS = 240_000;

/** The timeout of a test that starts child processes and waits for them. */
export const PROCESS_TEST_TIMEOUT_MS = 480_000;

/** Resolve with the first stdout line matching `pattern`; reject on exit or timeout. */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs = CHILD_LINE_TIMEOUT_MS): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer | string): void => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        const match = line.match(pattern);
        if (match) {
          cleanup();
          resolve(match);
          return;
        }
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`child ${child.pid} exited (${code ?? signal}) before printing ${pattern}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`child ${child.pid} did not print ${pattern} within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * A start barrier across processes: each worker announces it is ready, then waits for the
 * file this test creates once all of them did, so they contend from the same moment
 * (starting a ts-node process takes seconds; a whole run of some workers, milliseconds).
 */
export async function waitForGo(goFile: string): Promise<void> {
  while (!existsSync(goFile)) await new Promise((resolve) => setTimeout(resolve, 2));
}

/** Resolve with the exit code once the child ends. */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Kill exactly the children we started, by pid. */
export async function killAll(children: ChildProcess[], signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  await Promise.all(
    children.map((child) => {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(null);
      child.kill(signal);
      return exited(child);
    }),
  );
}
