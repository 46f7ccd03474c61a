import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHILD_LINE_TIMEOUT_MS, exited, killAll, spawnTs } from '../support/processes';

const WORKER = join(__dirname, 'fixtures', 'file-lock-worker.ts');

export interface WorkerConfig {
  dir: string;
  key: string;
  action: 'hold' | 'loop';
  mode?: 'shared' | 'exclusive';
  waitMs?: number;
  ttlMs?: number;
  mechanism?: 'auto' | 'kernel' | 'exclusive-create';
  iterations?: number;
  log?: string;
  name?: string;
  announceBusy?: boolean;
  recheckMs?: number;
  go?: string;
}

/**
 * A worker process whose stdout lines are all kept, so a test can look for a line the worker
 * printed before the test started listening (a `stale` report printed just before `acquired`).
 */
export class Worker {
  readonly lines: string[] = [];
  private readonly listeners = new Set<() => void>();
  private exitedEarly = false;

  constructor(readonly child: ChildProcess) {
    let buffer = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffer += chunk;
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      this.lines.push(...parts);
      for (const listener of [...this.listeners]) listener();
    });
    child.once('exit', () => {
      this.exitedEarly = true;
      for (const listener of [...this.listeners]) listener();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first line (from the beginning) matching `pattern`, waiting for it if needed. */
  line(pattern: RegExp, timeoutMs = CHILD_LINE_TIMEOUT_MS): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        for (const line of this.lines) {
          const match = line.match(pattern);
          if (match) {
            done();
            resolve(match);
            return;
          }
        }
        if (this.exitedEarly) {
          done();
          reject(new Error(`worker ${this.pid} exited without printing ${pattern}; it printed:\n${this.lines.join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`worker ${this.pid} did not print ${pattern} within ${timeoutMs} ms; it printed:\n${this.lines.join('\n')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** `acquired <fencingToken> <epochMs>` → numbers. */
  async acquired(timeoutMs?: number): Promise<{ fencingToken: number; at: number }> {
    const [, token, at] = await this.line(/^acquired (\d+) ([\d.]+)$/, timeoutMs);
    return { fencingToken: Number(token), at: Number(at) };
  }

  /** Ask the worker to release (SIGUSR2); resolves with the time it started releasing. */
  async release(): Promise<number> {
    this.child.kill('SIGUSR2');
    const [, at] = await this.line(/^released ([\d.]+) released$/);
    await exited(this.child);
    return Number(at);
  }
}

/** Starts workers and removes them (SIGKILL, by pid) and the temp dirs after each test. */
export class Kit {
  private readonly workers: Worker[] = [];
  private readonly dirs: string[] = [];

  tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-lock-file-'));
    this.dirs.push(dir);
    return dir;
  }

  start(config: WorkerConfig): Worker {
    const worker = new Worker(spawnTs(WORKER, [JSON.stringify(config)]));
    this.workers.push(worker);
    return worker;
  }

  async cleanup(): Promise<void> {
    await killAll(this.workers.splice(0).map((worker) => worker.child));
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Epoch milliseconds with sub-millisecond precision, comparable with the workers' times. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}
