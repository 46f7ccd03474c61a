/**
 * A bench worker process: forked by bench/harness/workers.ts, told what to do over IPC
 * (see harness/protocol.ts). Never run directly.
 */
import { performance } from 'node:perf_hooks';
import { applyTelemetryMode } from './harness/telemetry-mode';
import { createLockClient, cycleOnce, sent, type Held, type LockClient } from './harness/locks';
import { closedLoop, sleep } from './harness/measure';
import { hrNow, type Acquisition, type FromWorker, type Task, type ToWorker } from './harness/protocol';

applyTelemetryMode();

function send(message: FromWorker): void {
  process.send?.(message);
}

// A worker runs one task after another (the parent reuses workers across repetitions).
let go: () => void = () => undefined;
let started = Promise.resolve();
function armStart(): void {
  started = new Promise<void>((resolve) => (go = resolve));
}
/** Latest acquisition broadcast by the parent (hand-off runs). */
let seen = { worker: -1, seq: -1 };
/** Sequence number of each worker's latest broadcast acquisition. */
const seqOf = new Map<number, number>();
const seenWaiters = new Set<() => void>();

process.on('message', (message: ToWorker) => {
  if (message.type === 'run') {
    armStart();
    seen = { worker: -1, seq: -1 };
    seqOf.clear();
    void run(message.task).catch(fail);
  }
  else if (message.type === 'go') go();
  else if (message.type === 'acquired') {
    seen = { worker: message.worker, seq: message.seq };
    seqOf.set(message.worker, message.seq);
    for (const wake of [...seenWaiters]) wake();
  } else if (message.type === 'stop') process.exit(0);
});
process.on('disconnect', () => process.exit(0));

function fail(error: unknown): void {
  send({ type: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  setTimeout(() => process.exit(1), 100);
}

/**
 * Resolve once the parent has reported our own acquisition (a sequence number above
 * `ownBefore`) and, after it, one by another worker.
 */
function otherAcquired(me: number, ownBefore: number, deadline: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      const own = seqOf.get(me) ?? -1;
      if ((own > ownBefore && seen.seq > own && seen.worker !== me) || performance.now() >= deadline) {
        seenWaiters.delete(check);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(check, Math.max(0, deadline - performance.now()));
    seenWaiters.add(check);
    check();
  });
}

async function handoffWorker(client: LockClient, task: Extract<Task, { task: 'handoff' }>, me: number, deadline: number): Promise<Acquisition[]> {
  const acquisitions: Acquisition[] = [];
  while (performance.now() < deadline) {
    let held: Held | null;
    try {
      held = await client.acquire(task.key, 60_000);
    } catch (error) {
      if (process.env.BENCH_DEBUG) process.stderr.write(`[worker ${process.pid}] acquire failed: ${String(error)}\n`);
      await sleep(1);
      continue;
    }
    if (!held) continue;
    const acquiredAt = hrNow();
    const ownBefore = seqOf.get(me) ?? -1;
    if (!task.greedy) send({ type: 'acquired', worker: me });
    if (task.holdMs > 0) await sleep(task.holdMs);
    const releaseCalledAt = hrNow();
    await held.release();
    const releasedAt = hrNow();
    acquisitions.push({ worker: me, pid: process.pid, acquiredAt, releaseCalledAt, releasedAt });
    // Our own broadcast comes back too; wait for someone else's, later than ours.
    if (!task.greedy) await otherAcquired(me, ownBefore, deadline);
  }
  return acquisitions;
}

async function run(task: Task): Promise<void> {
  if (task.task === 'http') {
    const { startHttpApp } = await import('./scenarios/http-app');
    const port = await startHttpApp(task.backend, task.context);
    send({ type: 'listening', port });
    return;
  }
  const client = await createLockClient(task.kind, task.context);
  switch (task.task) {
    case 'loop': {
      const keys = Array.from({ length: task.concurrency }, (_, loop) => `${task.keyPrefix}:${process.pid}:${loop}`);
      send({ type: 'ready' });
      await started;
      let sentBefore = 0;
      const window = await closedLoop((loop) => cycleOnce(client, keys[loop]), {
        concurrency: task.concurrency,
        durationMs: task.durationMs,
        warmupMs: task.warmupMs,
        probe: {
          start: async () => void (sentBefore = sent.commands),
          finish: async () => ({ sent: sent.commands - sentBefore }),
        },
      });
      send({
        type: 'result',
        loop: { ops: window.ops, elapsedMs: window.elapsedMs, cpuUs: window.cpuUs, latencies: Array.from(window.latencies.values()) },
        sentCommands: window.extra.sent,
      });
      break;
    }
    case 'handoff': {
      send({ type: 'ready' });
      await started;
      const deadline = performance.now() + task.durationMs;
      const sentBefore = sent.commands;
      const perWorker = await Promise.all(task.workerIds.map((id) => handoffWorker(client, task, id, deadline)));
      send({ type: 'result', acquisitions: perWorker.flat(), sentCommands: sent.commands - sentBefore });
      break;
    }
    case 'hold': {
      send({ type: 'ready' });
      await started;
      const held = await client.acquire(task.key, 60_000);
      if (!held) throw new Error('hold: could not acquire');
      send({ type: 'held', at: hrNow() });
      setInterval(() => undefined, 1 << 30);
      return; // until killed
    }
    case 'wait-acquire': {
      send({ type: 'ready' });
      await started;
      const held = await client.acquire(task.key, task.waitMs);
      const at = hrNow();
      if (!held) throw new Error(`wait-acquire: not acquired within ${task.waitMs} ms`);
      send({ type: 'got', at });
      await held.release();
      break;
    }
  }
  await client.close();
}
