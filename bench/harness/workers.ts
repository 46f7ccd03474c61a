import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { FromWorker, Task, ToWorker } from './protocol';

const ROOT = join(__dirname, '..', '..');

/** A bench worker process (bench/worker.ts under ts-node) and typed IPC with it. */
export class Worker {
  readonly child: ChildProcess;
  private readonly listeners = new Set<(message: FromWorker) => void>();
  private exitError: Error | null = null;

  constructor() {
    this.child = fork(join(ROOT, 'bench', 'worker.ts'), [], {
      cwd: ROOT,
      execArgv: ['-r', 'ts-node/register/transpile-only'],
      env: { ...process.env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json') },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (message: FromWorker) => {
      for (const listener of [...this.listeners]) listener(message);
    });
    this.child.once('exit', (code, signal) => {
      this.exitError = new Error(`worker ${this.child.pid} exited (${code ?? signal})`);
      for (const listener of [...this.listeners]) listener({ type: 'error', message: this.exitError.message });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  send(message: ToWorker): void {
    if (this.child.connected) this.child.send(message);
  }

  on(listener: (message: FromWorker) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Next message of `type`; rejects on a worker error or exit, or after `timeoutMs`. */
  next<T extends FromWorker['type']>(type: T, timeoutMs = 120_000): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve, reject) => {
      if (this.exitError) return reject(this.exitError);
      const timer = setTimeout(() => {
        off();
        reject(new Error(`worker ${this.pid}: no "${type}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on((message) => {
        if (message.type === type) {
          clearTimeout(timer);
          off();
          resolve(message as Extract<FromWorker, { type: T }>);
        } else if (message.type === 'error') {
          clearTimeout(timer);
          off();
          reject(new Error(`worker ${this.pid}: ${message.message}`));
        }
      });
    });
  }

  run(task: Task): void {
    this.send({ type: 'run', task });
  }

  /** Kill exactly this child (by its pid) and wait for it. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.kill(signal);
    await exited;
  }
}

/** Worker processes kept across repetitions (starting ts-node costs seconds). */
const idle: Worker[] = [];

/** Start (or reuse) one worker per task, give each its task, wait until all are ready. */
export async function startWorkers(tasks: readonly Task[]): Promise<Worker[]> {
  const workers = tasks.map(() => {
    let worker = idle.pop();
    while (worker && (worker.child.exitCode !== null || worker.child.signalCode !== null)) worker = idle.pop();
    return worker ?? new Worker();
  });
  try {
    await Promise.all(
      workers.map((worker, index) => {
        const ready = worker.next('ready');
        worker.run(tasks[index]);
        return ready;
      }),
    );
  } catch (error) {
    await Promise.all(workers.map((worker) => worker.kill()));
    throw error;
  }
  return workers;
}

/** Give workers back for the next run (they finished their task). */
export function releaseWorkers(workers: readonly Worker[]): void {
  idle.push(...workers.filter((worker) => worker.child.exitCode === null && worker.child.signalCode === null));
}

/** Kill these workers (exactly these pids). */
export async function stopWorkers(workers: readonly Worker[]): Promise<void> {
  await Promise.all(workers.map((worker) => worker.kill()));
}

/** Kill every idle worker; the runner calls this at the end of each scenario. */
export async function stopIdleWorkers(): Promise<void> {
  await stopWorkers(idle.splice(0));
}
