/**
 * The `limit` permit cycle (tryAcquire + release through the service) of this checkout against
 * other revisions and redis-semaphore's `Semaphore`, on a Redis of its own (pinned to its own
 * CPU), interleaved, medians of REPS windows: the per-cycle figures that do not depend on how
 * loaded the machine is (Redis commands, Redis time inside the scripts) beside those that do
 * (cycles/s, Redis and Node CPU). The diagnostic behind bench/NOTES.md section 13, not part of
 * `npm run bench`.
 *
 *   mkdir ../base && git archive <rev> | tar -x -C ../base && ln -s "$PWD/node_modules" ../base/node_modules
 *   node -r ts-node/register/transpile-only bench/permit-costs.ts [../base ...]
 */
import { resolve } from 'node:path';
import type Redis from 'ioredis';
import type { SpaceLockService } from '../lib/space-lock.service';
import type { LockModuleOptions } from '../lib/lock-module-options.interface';
import { num, table } from './harness/format';
import { countingRedis, createService } from './harness/locks';
import { closedLoop, type Window } from './harness/measure';
import { commandCalls, planPlacement, redisCpuSeconds, RedisServer, totalCalls } from './harness/redis-server';
import { median } from './harness/stats';

const REPS = 7;
const PERMITS = 32;
const TTL_MS = 30_000;

interface Row {
  name: string;
  setup(url: string): Promise<void>;
  cycle(): Promise<void>;
  teardown(): Promise<void>;
}

function permitRow(name: string, create: (options: LockModuleOptions) => Promise<SpaceLockService>, index: number): Row {
  let service: SpaceLockService | undefined;
  let client: Redis | undefined;
  return {
    name,
    async setup(url) {
      client = countingRedis(url);
      service = await create({ backend: 'redis', ttlMs: TTL_MS, keyPrefix: `pc${index}:`, redis: { client } });
    },
    async cycle() {
      const held = await service!.tryAcquire('permits', { limit: PERMITS });
      if (!held) throw new Error(`${name}: uncontended acquire refused`);
      await held.release();
    },
    async teardown() {
      await service!.beforeApplicationShutdown();
      client!.disconnect();
    },
  };
}

function semaphoreRow(): Row {
  let redis: Redis | undefined;
  let Semaphore: typeof import('redis-semaphore').Semaphore;
  return {
    name: `redis-semaphore Semaphore (limit ${PERMITS})`,
    async setup(url) {
      ({ Semaphore } = await import('redis-semaphore'));
      redis = countingRedis(url);
    },
    async cycle() {
      const semaphore = new Semaphore(redis!, 'pc:semaphore', PERMITS, { lockTimeout: TTL_MS, acquireAttemptsLimit: 1 });
      if (!(await semaphore.tryAcquire())) throw new Error('redis-semaphore: uncontended acquire refused');
      await semaphore.release();
    },
    async teardown() {
      redis!.disconnect();
    },
  };
}

/** Redis time inside EVALSHA/EVAL, µs (`INFO commandstats`; commands a script runs are counted in it and again on their own). */
async function scriptMicros(admin: Redis): Promise<number> {
  const info = await admin.info('commandstats');
  let micros = 0;
  for (const match of info.matchAll(/^cmdstat_(evalsha|eval):calls=\d+,usec=(\d+)/gm)) micros += Number(match[2]);
  return micros;
}

async function main(): Promise<void> {
  const others = process.argv.slice(2);
  const rows: Row[] = [semaphoreRow()];
  for (const [index, dir] of others.entries()) {
    const harness = (await import(`${resolve(dir)}/bench/harness/locks`)) as typeof import('./harness/locks');
    rows.push(permitRow(`limit ${PERMITS}, ${dir}`, harness.createService, index + 1));
  }
  rows.push(permitRow(`limit ${PERMITS}, this checkout`, createService, 0));
  const placement = planPlacement();
  const server = await RedisServer.start(placement);
  const admin = server.client();
  try {
    for (const row of rows) await row.setup(server.url);
    for (const inFlight of [1, 16]) {
      const windows = rows.map((): (Window & { redis: Record<string, number> })[] => []);
      for (let rep = 0; rep < REPS; rep++) {
        for (let turn = 0; turn < rows.length; turn++) {
          const index = (turn + rep) % rows.length;
          let before: { calls: number; cpu: number; scripts: number } | undefined;
          let redis: Record<string, number> = {};
          const window = await closedLoop(() => rows[index].cycle(), {
            concurrency: inFlight,
            durationMs: 1_500,
            warmupMs: 300,
            probe: {
              start: async () => {
                before = { calls: totalCalls(await commandCalls(admin)), cpu: await redisCpuSeconds(admin), scripts: await scriptMicros(admin) };
              },
              finish: async (ops) => {
                const scripts = await scriptMicros(admin);
                redis = {
                  cmds: (totalCalls(await commandCalls(admin)) - before!.calls) / ops,
                  cpu: (((await redisCpuSeconds(admin)) - before!.cpu) * 1e6) / ops,
                  scriptUs: (scripts - before!.scripts) / ops,
                };
                return redis;
              },
            },
          });
          windows[index].push({ ...window, redis });
        }
      }
      const reference = median(windows[0].map((w) => (w.ops * 1_000) / w.elapsedMs));
      process.stdout.write(`\n${inFlight} in flight, ${placement.description}, Redis ${server.version}, medians of ${REPS}\n\n`);
      process.stdout.write(
        `${table(
          ['row', 'cycles/s', 'x Semaphore', 'Redis cmds/cycle', 'Redis µs in scripts/cycle', 'Redis CPU µs/cycle', 'Node CPU µs/cycle'],
          rows.map((row, index) => {
            const rate = median(windows[index].map((w) => (w.ops * 1_000) / w.elapsedMs));
            return [
              row.name,
              Math.round(rate),
              `${(rate / reference).toFixed(2)}x`,
              num(median(windows[index].map((w) => w.redis.cmds)), 2),
              num(median(windows[index].map((w) => w.redis.scriptUs)), 2),
              num(median(windows[index].map((w) => w.redis.cpu)), 1),
              num(median(windows[index].map((w) => w.cpuUs / w.ops)), 1),
            ];
          }),
        )}\n`,
      );
    }
  } finally {
    for (const row of rows) await row.teardown().catch(() => undefined);
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
