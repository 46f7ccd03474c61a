/**
 * Where an uncontended Redis acquire+release spends Node CPU, layer by layer, in one process
 * and one run (interleaved, median of 7): the raw two-command floor, our two scripts sent raw,
 * our backend, our service, and redis-semaphore for scale. A diagnostic behind the analysis in
 * bench/NOTES.md, not part of `npm run bench`.
 *
 *   node -r ts-node/register/transpile-only bench/layers.ts [inFlight=16]
 */
import { RedisLockBackend } from '../lib/backends/redis/redis-lock.backend';
import { recordTail } from '../lib/backends/redis/redis-holder-record';
import { lockKeys } from '../lib/backends/redis/redis-lock-keys';
import { ACQUIRE, turnScripts } from '../lib/backends/redis/redis-lock.scripts';
import { newLockToken } from '../lib/lock-token';
import type { LockOwner } from '../lib/lock-backend.interface';
import { table } from './harness/format';
import { COMPARE_AND_DELETE, createService } from './harness/locks';
import { closedLoop } from './harness/measure';
import { planPlacement, RedisServer } from './harness/redis-server';
import { median } from './harness/stats';

const REPS = 7;

async function main(): Promise<void> {
  const inFlight = Number(process.argv[2] ?? 16);
  const placement = planPlacement();
  const server = await RedisServer.start(placement);
  try {
    const raw = server.client();
    const deleteSha = (await raw.script('LOAD', COMPARE_AND_DELETE)) as string;
    const release = turnScripts(250).release;
    await raw.script('LOAD', ACQUIRE.lua);
    await raw.script('LOAD', release.lua);
    const owner: LockOwner = { ownerId: 'layers', instanceId: 'abcdef0123456789', hostname: 'host', pid: 1 };
    const tail = recordTail(Date.now(), JSON.stringify(owner));
    const backend = new RedisLockBackend(server.client());
    await backend.init();
    const service = await createService({ backend: 'redis', ttlMs: 30_000, keyPrefix: 'layers:', redis: { client: server.client() } });
    const { Mutex } = await import('redis-semaphore');
    const semaphoreClient = server.client();

    const layers: Record<string, (loop: number) => Promise<unknown>> = {
      'raw SET NX PX + EVALSHA compare-and-delete': async (loop) => {
        const key = `layers:floor:${loop}`;
        const token = newLockToken();
        await raw.set(key, token, 'PX', 30_000, 'NX');
        await raw.evalsha(deleteSha, 1, key, token);
      },
      'our two scripts, sent raw': async (loop) => {
        const keys = lockKeys(`layers:shape:${loop}`);
        const token = newLockToken();
        await raw.evalsha(ACQUIRE.sha, 3, keys.lease, keys.fence, keys.holder, token, '30000', tail);
        await raw.evalsha(release.sha, 5, keys.lease, keys.fence, keys.holder, keys.queue, keys.waiting, token);
      },
      'RedisLockBackend tryAcquire + release': async (loop) => {
        const request = { key: `layers:backend:${loop}`, token: newLockToken(), ttlMs: 30_000, mode: 'exclusive' as const, owner };
        if (!(await backend.tryAcquire(request)).acquired) throw new Error('uncontended acquire refused');
        await backend.release(request);
      },
      'SpaceLockService tryAcquire + release': async (loop) => {
        const lock = await service.tryAcquire(`service:${loop}`);
        if (!lock) throw new Error('uncontended acquire refused');
        await lock.release();
      },
      'redis-semaphore Mutex (for scale)': async (loop) => {
        const mutex = new Mutex(semaphoreClient, `layers:semaphore:${loop}`, { lockTimeout: 30_000, acquireAttemptsLimit: 1 });
        if (!(await mutex.tryAcquire())) throw new Error('uncontended acquire refused');
        await mutex.release();
      },
    };
    const names = Object.keys(layers);
    const cpu = new Map<string, number[]>(names.map((name) => [name, []]));
    const rate = new Map<string, number[]>(names.map((name) => [name, []]));
    for (let rep = 0; rep < REPS; rep++) {
      for (let index = 0; index < names.length; index++) {
        const name = names[(index + rep) % names.length];
        const window = await closedLoop(layers[name], { concurrency: inFlight, durationMs: 1_000, warmupMs: 200 });
        cpu.get(name)!.push(window.cpuUs / window.ops);
        rate.get(name)!.push((window.ops / window.elapsedMs) * 1_000);
      }
    }
    const floorCpu = median(cpu.get(names[0])!);
    process.stdout.write(`${inFlight} in flight, ${placement.description}\n\n`);
    process.stdout.write(
      `${table(
        ['layer', 'ops/s', 'Node CPU µs/op', 'vs raw floor'],
        names.map((name) => {
          const used = median(cpu.get(name)!);
          return [name, Math.round(median(rate.get(name)!)), used.toFixed(2), `${used - floorCpu >= 0 ? '+' : ''}${(used - floorCpu).toFixed(2)}`];
        }),
      )}\n`,
    );
    await service.beforeApplicationShutdown();
  } finally {
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
