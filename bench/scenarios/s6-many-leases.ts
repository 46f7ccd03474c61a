import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { num, table } from '../harness/format';
import type { BenchContext, Scenario } from '../harness/context';
import { createLockClient, LABELS, sent, type Held, type LockKind } from '../harness/locks';
import { sleep } from '../harness/measure';
import { commandCalls, totalCalls } from '../harness/redis-server';
import { median } from '../harness/stats';
import { missingRows } from './s1-uncontended-redis';

const LEASES = 10_000;
const TTL_MS = 3_000;
/** Our default heartbeat is ttlMs / 3; redis-semaphore refreshes at 0.8 x lockTimeout. */
const TICK_MS = 1_000;

interface HoldResult {
  sentPerTick: number;
  redisCmdsPerTick: number;
  lagP99Ms: number;
  lagMaxMs: number;
  acquireMs: number;
}

async function holdMany(context: BenchContext, kind: LockKind, holdMs: number): Promise<HoldResult> {
  const client = await createLockClient(kind, { ...context.locks, ttlMs: TTL_MS });
  const held: Held[] = [];
  try {
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (next < LEASES) {
          const key = `s6:${kind}:${next++}`;
          const lease = await client.acquire(key, 0);
          if (!lease) throw new Error(`${kind}: ${key} refused`);
          held.push(lease);
        }
      }),
    );
    const acquireMs = performance.now() - started;
    // Let acquisition traffic drain and heartbeats settle into their rhythm.
    await sleep(TICK_MS);
    const histogram = monitorEventLoopDelay({ resolution: 5 });
    const sentBefore = sent.commands;
    const callsBefore = totalCalls(await commandCalls(context.admin));
    histogram.enable();
    await sleep(holdMs);
    histogram.disable();
    const ticks = holdMs / TICK_MS;
    const result: HoldResult = {
      sentPerTick: (sent.commands - sentBefore) / ticks,
      redisCmdsPerTick: (totalCalls(await commandCalls(context.admin)) - callsBefore - 1) / ticks,
      lagP99Ms: histogram.percentile(99) / 1e6,
      lagMaxMs: histogram.max / 1e6,
      acquireMs,
    };
    return result;
  } finally {
    await Promise.all(held.map((lease) => lease.release().catch(() => undefined)));
    await client.close();
  }
}

/** 6. 10,000 leases held at once on Redis with heartbeats on. */
export const manyLeasesScenario: Scenario = {
  id: 6,
  title: `Many leases: ${LEASES.toLocaleString('en-US')} held at once on Redis, heartbeats on (ttl ${TTL_MS} ms)`,
  async run(context) {
    const { ready, notes } = await missingRows(['ours-redis', 'redis-semaphore'], context.locks);
    const holdMs = context.quick ? 2 * TICK_MS : 6 * TICK_MS;
    const reps = context.quick ? 1 : 3;
    const results = new Map<LockKind, HoldResult[]>(ready.map((kind) => [kind, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (const kind of ready) {
        context.log(`  rep ${rep + 1}/${reps} ${kind}`);
        results.get(kind)!.push(await holdMany(context, kind, holdMs));
      }
    }
    const pick = (kind: LockKind, field: keyof HoldResult): number => median(results.get(kind)!.map((r) => r[field]));
    const rows = ready.map((kind) => [
      LABELS[kind],
      num(pick(kind, 'acquireMs'), 0),
      num(pick(kind, 'sentPerTick'), 1),
      num(pick(kind, 'sentPerTick') / (LEASES / 100), 3),
      num(pick(kind, 'redisCmdsPerTick'), 0),
      num(pick(kind, 'lagP99Ms'), 2),
      num(pick(kind, 'lagMaxMs'), 2),
    ]);
    const body = [
      table(
        ['contender', `acquire ${LEASES} ms`, `round trips per ${TICK_MS} ms tick`, 'per 100 leases', 'Redis cmds per tick (incl. inside Lua)', 'event-loop lag p99 ms', 'lag max ms'],
        rows,
      ),
      '',
      `Held for ${holdMs / 1000} s after a 1 s settle; median of ${reps}. Round trips = commands the process sent (client-side count); Redis commands from INFO commandstats deltas. Lag from perf_hooks.monitorEventLoopDelay over the hold. redis-semaphore refreshes every lock on its own timer (0.8 x lockTimeout).`,
      ...notes,
    ].join('\n');
    if (!results.has('ours-redis')) return { body, verdicts: [{ scenario: '6', target: '≤ 1 round trip per 100 leases per tick', measured: 'redis backend not available', met: false }] };
    const perHundred = pick('ours-redis', 'sentPerTick') / (LEASES / 100);
    const lag = pick('ours-redis', 'lagP99Ms');
    return {
      body,
      verdicts: [
        { scenario: '6', target: '≤ 1 round trip per 100 leases per tick', measured: `${num(perHundred, 3)} (${num(pick('ours-redis', 'sentPerTick'), 1)} per tick for ${LEASES} leases)`, met: perHundred <= 1 },
        { scenario: '6', target: 'event-loop lag p99 < 20 ms', measured: `${num(lag, 2)} ms`, met: lag < 20 },
      ],
    };
  },
};
