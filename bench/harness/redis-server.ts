import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { sleep } from './measure';
import { sent } from './locks';

/** Where Node and Redis run; printed with every result. */
export interface Placement {
  taskset: boolean;
  nodeCpus: string;
  redisCpus: string;
  description: string;
}

function hasTaskset(): boolean {
  return spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Pin this Node process (and, by inheritance, the workers it forks later) to CPU 0 and leave
 * CPU 1 for redis-server, when there are at least two CPUs and `taskset` exists.
 */
export function planPlacement(): Placement {
  const count = cpus().length;
  if (count < 2 || !hasTaskset()) {
    return { taskset: false, nodeCpus: 'any', redisCpus: 'any', description: `not pinned (${count} CPU(s), taskset ${hasTaskset() ? 'present' : 'missing'})` };
  }
  const redisCpus = String(count - 1);
  const nodeCpus = count === 2 ? '0' : `0-${count - 2}`;
  const pinned = spawnSync('taskset', ['-a', '-p', '-c', nodeCpus, String(process.pid)], { stdio: 'ignore' }).status === 0;
  if (!pinned) return { taskset: false, nodeCpus: 'any', redisCpus: 'any', description: 'not pinned (taskset failed)' };
  return { taskset: true, nodeCpus, redisCpus, description: `node (and its workers) on CPU ${nodeCpus}, redis-server on CPU ${redisCpus} (taskset)` };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A private redis-server child on a free loopback port. Stop it with `stop()` (exactly that pid). */
export class RedisServer {
  private readonly clients: Redis[] = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly dir: string,
    readonly version: string,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** `extraArgs`: more redis-server arguments (`--replicaof host port` for a replica). */
  static async start(placement: Placement, extraArgs: readonly string[] = []): Promise<RedisServer> {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'nestjs-lock-bench-redis-'));
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning', ...extraArgs];
    const child = placement.taskset
      ? spawn('taskset', ['-c', placement.redisCpus, 'redis-server', ...args], { stdio: ['ignore', 'ignore', 'inherit'] })
      : spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    for (let attempt = 0; ; attempt++) {
      try {
        await client.connect();
        await client.ping();
        break;
      } catch (error) {
        if (attempt > 100 || child.exitCode !== null) {
          child.kill('SIGKILL');
          throw new Error(`redis-server did not start on port ${port}: ${String(error)}`);
        }
        client.disconnect();
        await sleep(50);
      }
    }
    const info = await client.info('server');
    client.disconnect();
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    return new RedisServer(child, port, dir, version);
  }

  /** A connection to this server; `stop()` closes it if nobody did. */
  client(): Redis {
    const client = new Redis({ port: this.port, host: '127.0.0.1', enableAutoPipelining: false });
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    for (const client of this.clients.splice(0)) client.disconnect();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      // taskset execs redis-server, so this pid is redis-server itself.
      this.child.kill('SIGTERM');
      await Promise.race([exited, sleep(3_000)]);
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `INFO commandstats` as command -> calls. */
export async function commandCalls(client: Redis): Promise<Map<string, number>> {
  const info = await client.info('commandstats');
  const calls = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1], Number(match[2]));
  return calls;
}

export function totalCalls(calls: Map<string, number>, exclude: readonly string[] = ['info']): number {
  let total = 0;
  for (const [command, count] of calls) if (!exclude.includes(command)) total += count;
  return total;
}

/** Redis CPU seconds (user + sys, all threads) from `INFO cpu`. */
export async function redisCpuSeconds(client: Redis): Promise<number> {
  const info = await client.info('cpu');
  const read = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return read('used_cpu_user') + read('used_cpu_sys');
}

/** One PING round trip, median of `count`, in ms. */
export async function pingRoundTripMs(client: Redis, count = 200): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint();
    await client.ping();
    samples.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

/**
 * Window probe: Redis commands per op (INFO commandstats delta, INFO itself excluded) and
 * Redis CPU per op / Redis CPU % (INFO cpu delta).
 */
export function redisProbe(
  admin: Redis,
  sentCommands: () => number = () => sent.commands,
): { start(): Promise<void>; finish(ops: number, elapsedMs: number): Promise<Record<string, number>> } {
  let calls = 0;
  let cpu = 0;
  let sentAtStart = 0;
  return {
    async start() {
      sentAtStart = sentCommands();
      calls = totalCalls(await commandCalls(admin));
      cpu = await redisCpuSeconds(admin);
    },
    async finish(ops, elapsedMs) {
      const cpuUsed = (await redisCpuSeconds(admin)) - cpu;
      const callsUsed = totalCalls(await commandCalls(admin)) - calls;
      const sentUsed = sentCommands() - sentAtStart;
      return {
        sentPerOp: ops === 0 ? NaN : sentUsed / ops,
        redisCmdsPerOp: ops === 0 ? NaN : callsUsed / ops,
        redisCpuUsPerOp: ops === 0 ? NaN : (cpuUsed * 1e6) / ops,
        redisCpuPct: (cpuUsed * 1e5) / elapsedMs,
      };
    },
  };
}
