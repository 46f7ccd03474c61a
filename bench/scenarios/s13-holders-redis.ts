import { performance } from 'node:perf_hooks';
import { num, table, x } from '../harness/format';
import type { BenchContext, Scenario } from '../harness/context';
import { countingRedis, createService, oursOptions } from '../harness/locks';
import { interleaved, summaryTable, type Contender, type Summary } from '../harness/measure';
import { pingRoundTripMs, redisProbe } from '../harness/redis-server';
import { median } from '../harness/stats';
import type { SpaceLockService } from '../../lib/space-lock.service';
import type { LockCallOptions } from '../../lib/held-lock.interface';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';

/** Permits of the semaphore rows: more than the callers in flight, so no cycle is ever refused. */
const PERMITS = 32;

const ROWS = {
  exclusive: 'nestjs-lock (redis) exclusive',
  shared: 'nestjs-lock (redis) shared',
  permits: `nestjs-lock (redis) limit ${PERMITS}`,
  semaphore: `redis-semaphore Semaphore (limit ${PERMITS})`,
} as const;

/** Our service on the bench's Redis, cycling acquire+release with `options`; `keyOf` per loop. */
function oursContender(name: string, context: BenchContext, options: LockCallOptions, keyOf: (loop: number) => string): Contender {
  let service: SpaceLockService | undefined;
  const settings = oursOptions('ours-redis', context.locks);
  return {
    name,
    setup: async () => {
      service = await createService(settings);
    },
    cycle: async (loop) => {
      const held = await service!.tryAcquire(keyOf(loop), options);
      if (!held) throw new Error(`${name}: uncontended acquire refused`);
      await held.release();
    },
    teardown: async () => {
      await service!.beforeApplicationShutdown();
      (settings.redis?.client as { disconnect(): void } | undefined)?.disconnect();
    },
  };
}

/** redis-semaphore's `Semaphore` with its defaults (refresh at 0.8 x lockTimeout), one attempt per cycle. */
function semaphoreContender(context: BenchContext, key: string): Contender {
  let redis: ReturnType<typeof countingRedis> | undefined;
  let Semaphore: typeof import('redis-semaphore').Semaphore;
  return {
    name: ROWS.semaphore,
    setup: async () => {
      ({ Semaphore } = await import('redis-semaphore'));
      redis = countingRedis(context.locks.redisUrl ?? '');
    },
    cycle: async () => {
      const semaphore = new Semaphore(redis!, key, PERMITS, { lockTimeout: context.locks.ttlMs, acquireAttemptsLimit: 1 });
      if (!(await semaphore.tryAcquire())) throw new Error('redis-semaphore: uncontended acquire refused');
      await semaphore.release();
    },
    teardown: async () => redis!.disconnect(),
  };
}

/**
 * Readers-then-writer hand-off: replica A holds `readers` shared leases, replica B's writer
 * waits for the key (queued in Redis); from A's last `release()` call to B's grant. Two
 * services on their own connections, as two replicas of an app.
 */
async function readersThenWriter(context: BenchContext, rounds: number, readers: number): Promise<number[]> {
  const settings = [oursOptions('ours-redis', context.locks), oursOptions('ours-redis', context.locks)];
  const [a, b] = await Promise.all(settings.map((options) => createService(options)));
  const key = 's13:handoff';
  const queue = lockKeys(`bench:${key}`).queue;
  const gaps: number[] = [];
  try {
    for (let round = 0; round < rounds; round += 1) {
      const held = await Promise.all(Array.from({ length: readers }, () => a.acquire(key, { mode: 'shared' })));
      const writer = b.acquire(key, { waitMs: 10_000 });
      while ((await context.admin.llen(queue)) === 0) await new Promise(setImmediate);
      for (const lease of held.slice(0, -1)) await lease.release();
      const releasedAt = performance.now();
      void held[held.length - 1].release();
      const granted = await writer;
      gaps.push(performance.now() - releasedAt);
      await granted.release();
    }
  } finally {
    await Promise.all([a.beforeApplicationShutdown(), b.beforeApplicationShutdown()]);
    settings.forEach((options) => (options.redis?.client as { disconnect(): void } | undefined)?.disconnect());
  }
  return gaps.sort((p, q) => p - q);
}

/** 13. Shared locks and semaphores on Redis, beside our exclusive locks and redis-semaphore. */
export const holdersRedisScenario: Scenario = {
  id: 13,
  title: 'Shared locks and semaphores, Redis (acquire+release at 1 and 16 in flight; readers-then-writer hand-off)',
  async run(context) {
    const bodies: string[] = [];
    const byConcurrency = new Map<number, Map<string, Summary>>();
    for (const concurrency of [1, 16]) {
      context.log(`  ${concurrency} in flight`);
      const contenders = [
        oursContender(ROWS.exclusive, context, {}, (loop) => `s13:x:${loop}`),
        oursContender(ROWS.shared, context, { mode: 'shared' }, (loop) => `s13:r:${loop}`),
        oursContender(ROWS.permits, context, { limit: PERMITS }, () => 's13:permits'),
        semaphoreContender(context, 's13:semaphore'),
      ];
      const summaries = await interleaved(contenders, context.reps, {
        concurrency,
        durationMs: context.windowMs,
        warmupMs: context.warmupMs,
        probe: () => redisProbe(context.admin),
      });
      byConcurrency.set(concurrency, new Map(summaries.map((summary) => [summary.name, summary])));
      bodies.push(
        `### ${concurrency} in flight (exclusive and shared: one key per loop; semaphores: one key for all)`,
        '',
        summaryTable(summaries, ROWS.semaphore, [
          { header: 'Redis cmds/op (incl. inside Lua)', value: (s) => num(s.extra.redisCmdsPerOp, 2) },
          { header: 'Redis CPU µs/op', value: (s) => num(s.extra.redisCpuUsPerOp) },
        ]),
        '',
      );
    }
    const rounds = context.quick ? 20 : 100;
    const ping = await pingRoundTripMs(context.admin);
    const gaps = await readersThenWriter(context, rounds, 3);
    const p50 = median(gaps);
    const p99 = gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * 0.99))];
    bodies.push(
      '### Readers-then-writer hand-off (replica A: 3 readers; replica B: a writer queued behind them)',
      '',
      table(['measure', 'ms', 'x PING'], [
        ['PING round trip (median)', num(ping, 3), '1.00x'],
        [`last reader's release() call -> writer granted, p50 of ${rounds}`, num(p50, 3), x(p50 / ping)],
        ['same, p99', num(p99, 3), x(p99 / ping)],
      ]),
    );
    const ratio = (concurrency: number, row: string, reference: string): number => {
      const rows = byConcurrency.get(concurrency)!;
      return rows.get(row)!.opsPerSec / rows.get(reference)!.opsPerSec;
    };
    return {
      body: bodies.join('\n'),
      verdicts: [
        ...[1, 16].map((concurrency) => ({
          scenario: '13',
          target: `semaphore acquire+release ≥ 1.0x redis-semaphore Semaphore, ${concurrency} in flight`,
          measured: x(ratio(concurrency, ROWS.permits, ROWS.semaphore)),
          met: ratio(concurrency, ROWS.permits, ROWS.semaphore) >= 1,
        })),
        ...[1, 16].map((concurrency) => ({
          scenario: '13',
          target: `shared-lock cycles ≥ 0.9x our exclusive cycles, ${concurrency} in flight`,
          measured: x(ratio(concurrency, ROWS.shared, ROWS.exclusive)),
          met: ratio(concurrency, ROWS.shared, ROWS.exclusive) >= 0.9,
        })),
        { scenario: '13', target: 'report: readers-then-writer hand-off against a PING round trip', measured: `${num(p50, 3)} ms = ${x(p50 / ping)} PING (p50)`, met: null },
      ],
    };
  },
};
