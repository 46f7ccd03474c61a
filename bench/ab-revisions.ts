/**
 * This checkout against another revision, in one process and one run (interleaved, medians):
 * the service's uncontended Redis cycle (throughput, Node CPU, GC pauses per cycle) and the
 * Redis time of the two hot scripts (`INFO commandstats`). The diagnostic behind the A/B
 * figures in bench/NOTES.md, not part of `npm run bench`.
 *
 *   git worktree add ../base <rev> && ln -s "$PWD/node_modules" ../base/node_modules
 *   node -r ts-node/register/transpile-only bench/ab-revisions.ts ../base [inFlight=256]
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { resolve } from 'node:path';
import type Redis from 'ioredis';
import type { SpaceLockService } from '../lib/space-lock.service';
import type { LockModuleOptions } from '../lib/lock-module-options.interface';
import { recordTail } from '../lib/backends/redis/redis-holder-record';
import { lockKeys, type LockKeys } from '../lib/backends/redis/redis-lock-keys';
import * as ourScripts from '../lib/backends/redis/redis-lock.scripts';
import { table } from './harness/format';
import { createService } from './harness/locks';
import { closedLoop } from './harness/measure';
import { planPlacement, RedisServer } from './harness/redis-server';
import { median } from './harness/stats';

const REPS = 7;
const SCRIPT_CALLS = 10_000;

interface Revision {
  name: string;
  createService: (options: LockModuleOptions) => Promise<SpaceLockService>;
  scripts: typeof ourScripts;
}

async function main(): Promise<void> {
  const baseDir = process.argv[2];
  if (!baseDir) throw new Error('usage: ab-revisions.ts <checkout of the other revision> [inFlight]');
  const inFlight = Number(process.argv[3] ?? 256);
  const base = resolve(baseDir);
  const revisions: Revision[] = [
    {
      name: `other (${baseDir})`,
      createService: ((await import(`${base}/bench/harness/locks`)) as typeof import('./harness/locks')).createService,
      scripts: (await import(`${base}/lib/backends/redis/redis-lock.scripts`)) as typeof ourScripts,
    },
    { name: 'this checkout', createService, scripts: ourScripts },
  ];
  const placement = planPlacement();
  const server = await RedisServer.start(placement);
  let gcMs = 0;
  const gc = new PerformanceObserver((list) => list.getEntries().forEach((entry) => (gcMs += entry.duration)));
  gc.observe({ entryTypes: ['gc'] });
  try {
    const services = await Promise.all(
      revisions.map((revision, index) => revision.createService({ backend: 'redis', ttlMs: 30_000, keyPrefix: `ab${index}:`, redis: { client: server.client() } })),
    );
    const cycle = { rate: revisions.map((): number[] => []), cpu: revisions.map((): number[] => []), gc: revisions.map((): number[] => []) };
    for (let rep = 0; rep < REPS; rep++) {
      for (let turn = 0; turn < revisions.length; turn++) {
        const index = (turn + rep) % revisions.length;
        gcMs = 0;
        const window = await closedLoop(
          async (loop) => {
            const lock = await services[index].tryAcquire(`k:${loop}`);
            if (!lock) throw new Error('uncontended acquire refused');
            await lock.release();
          },
          { concurrency: inFlight, durationMs: 1_500, warmupMs: 300 },
        );
        cycle.rate[index].push((window.ops / window.elapsedMs) * 1_000);
        cycle.cpu[index].push(window.cpuUs / window.ops);
        cycle.gc[index].push((gcMs * 1_000) / window.ops);
      }
    }
    const scriptTimes = await scriptCosts(server.client(), revisions);
    process.stdout.write(`${inFlight} in flight, ${placement.description}\n\n`);
    process.stdout.write(
      `${table(
        ['revision', 'cycles/s', 'Node CPU µs/op', 'GC pause µs/op', 'acquire script µs', 'release script µs'],
        revisions.map((revision, index) => [
          revision.name,
          Math.round(median(cycle.rate[index])),
          median(cycle.cpu[index]).toFixed(2),
          median(cycle.gc[index]).toFixed(2),
          scriptTimes[index].acquire.toFixed(2),
          scriptTimes[index].release.toFixed(2),
        ]),
      )}\n`,
    );
    await Promise.all(services.map((service) => service.beforeApplicationShutdown()));
  } finally {
    gc.disconnect();
    await server.stop();
  }
}

/** Redis time per call of each revision's acquire and release scripts (medians of 9, interleaved). */
async function scriptCosts(redis: Redis, revisions: readonly Revision[]): Promise<{ acquire: number; release: number }[]> {
  const evalshaMicros = async (): Promise<number> => {
    const stats = (await redis.info('commandstats')) as string;
    return Number(/cmdstat_evalsha:calls=\d+,usec=(\d+)/.exec(stats)?.[1] ?? 0);
  };
  const tail = recordTail(Date.now(), JSON.stringify({ ownerId: 'ab', instanceId: 'ba0c7f2e-8a8b-4a53-b51e-3c5e3f2b1f11', hostname: 'host', pid: 1 }));
  const samples = revisions.map(() => ({ acquire: [] as number[], release: [] as number[] }));
  for (const { scripts } of revisions) {
    await redis.script('LOAD', scripts.ACQUIRE.lua);
    await redis.script('LOAD', scripts.turnScripts(250).release.lua);
  }
  const timed = async (send: (index: number) => Promise<unknown>): Promise<number> => {
    const before = await evalshaMicros();
    for (let start = 0; start < SCRIPT_CALLS; start += 100) await Promise.all(Array.from({ length: 100 }, (_, offset) => send(start + offset)));
    return ((await evalshaMicros()) - before) / SCRIPT_CALLS;
  };
  for (let rep = 0; rep < 9; rep++) {
    for (const [index, { scripts }] of revisions.entries()) {
      const release = scripts.turnScripts(250).release;
      const keysOf = (n: number): LockKeys => lockKeys(`ab-script:${index}:${rep % 3}:${n}`);
      samples[index].acquire.push(
        await timed((n) => {
          const keys = keysOf(n);
          return redis.evalsha(scripts.ACQUIRE.sha, 3, keys.lease, keys.fence, keys.holder, 'token-of-twenty-two-ch', '30000', tail);
        }),
      );
      samples[index].release.push(
        await timed((n) => {
          const keys = keysOf(n);
          // Revisions before the key layout had its own file took the turn scripts' KEYS as lease, holder, queue, waiting, fence.
          const turnKeys = 'lockKeys' in scripts ? [keys.lease, keys.holder, keys.queue, keys.waiting, keys.fence] : [keys.lease, keys.fence, keys.holder, keys.queue, keys.waiting];
          return redis.evalsha(release.sha, 5, ...turnKeys, 'token-of-twenty-two-ch');
        }),
      );
    }
  }
  return samples.map(({ acquire, release }) => ({ acquire: median(acquire), release: median(release) }));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
