import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { spawnTs } from '../support/processes';
import { RedisServer, until } from '../support/redis-server';
import { FencedResource } from './fenced-resource';
import { TcpProxy } from './tcp-proxy';

export const FAULT_KINDS = ['pause-holder', 'kill-holder', 'pause-redis', 'restart-redis-empty', 'proxy-delay', 'proxy-blackhole', 'promote-replica'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  seconds: number;
  seed: number;
  workers?: number;
  keys?: number;
  ttlMs?: number;
  /** How workers check their lease before a write (see fenced-writer.ts). Default `ensureHeld`. */
  check?: 'ensureHeld' | 'signal';
  log?: (line: string) => void;
}

/** Counts that must be zero, per fault kind they happened under (`none`: outside every fault window). */
export interface Violations {
  /** One (key, fencing token) granted to two processes. */
  doubleGrants: number;
  /** Write attempts by a holder after a newer grant of its key. Only `none` must be zero: faults allow it, fencing covers it. */
  overlaps: number;
  /** A grant whose token is not above a token the resource accepted before it (data loss included). */
  tokensNotAbove: number;
  /** Writes sent after the writer's lease had lapsed on its monotonic clock (a pause longer than the TTL). */
  lapsedWrites: number;
}

export interface ChaosReport {
  seed: number;
  seconds: number;
  workers: number;
  /** Workers with `redis.replicas: { min: 1 }` (every other one), so each fault, replica promotion included, hits both kinds. */
  replicaWorkers: number;
  injected: Record<FaultKind, number>;
  perKind: Record<FaultKind | 'none', Violations>;
  grants: number;
  writesAccepted: number;
  writesRefused: number;
  /** Workers with no accepted write in the quiet period after the last fault. */
  stalledWorkers: number;
  unhandledRejections: number;
  crashes: number;
  /** What broke a property outside fault windows, for the log. */
  details: string[];
}

interface Event {
  pid: number;
  kind: string;
  key: string;
  token: number;
  outcome: string;
  at: number;
}

interface Window {
  kind: FaultKind;
  from: number;
  to: number;
}

const nowUs = (): number => Number(process.hrtime.bigint() / 1_000n);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** mulberry32: the whole run follows from the seed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * Real worker processes on a few keys write to a fenced resource through a TCP proxy to a
 * private Redis with one replica (every other worker confirms its grants on that replica with
 * `redis.replicas`, so each fault meets both), while a seeded nemesis injects one fault at a time; then a
 * quiet period, then the properties are counted from every process's events.
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { seconds, seed, workers: workerCount = 4, keys: keyCount = 3, ttlMs = 1_500, check = 'ensureHeld', log = () => undefined } = options;
  const random = seeded(seed);
  const quietMs = Math.max(6_000, 4 * ttlMs);
  // Full syncs start at once instead of after the default 5 s of diskless-sync delay.
  const syncAtOnce = ['--repl-diskless-sync-delay', '0'];
  let primary = await RedisServer.start(syncAtOnce);
  let replica = await RedisServer.start([...syncAtOnce, '--replicaof', '127.0.0.1', String(primary.port)]);
  const proxy = await TcpProxy.start(primary.port);
  const resource = await FencedResource.start();
  const events: Event[] = [];
  const accepted: { key: string; token: number; at: number }[] = [];
  const offer = resource.offer.bind(resource);
  resource.offer = (write) => {
    const ok = offer(write);
    if (ok) accepted.push({ key: write.key, token: write.fencingToken, at: nowUs() });
    return ok;
  };
  const windows: Window[] = [];
  const details: string[] = [];
  const pauses: { pid: number; key: string; token: number; from: number; to: number }[] = [];
  const killedByUs = new Set<number>();
  let crashes = 0;
  const workers: ChildProcess[] = [];
  const keys = Array.from({ length: keyCount }, (_, index) => `k${index}`);

  const spawnWorker = (slot: number): ChildProcess => {
    const child = spawnTs(join(__dirname, 'fenced-writer.ts'), [], {
      REDIS_URL: `redis://127.0.0.1:${proxy.port}`,
      KEY_PREFIX: `chaos-${seed}:`,
      KEYS: [...keys.slice(slot % keyCount), ...keys.slice(0, slot % keyCount)].join(','),
      TTL_MS: String(ttlMs),
      STEP_MS: '50',
      WRITES: '5',
      CHECK: check,
      WRITE_URL: resource.url,
      REPLICAS: slot % 2 === 1 ? '1' : '0',
    });
    let buffer = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) events.push(parseEvent(child.pid ?? 0, line));
    });
    child.once('exit', () => {
      if (!killedByUs.has(child.pid ?? 0) && !stopping) crashes += 1;
    });
    workers[slot] = child;
    return child;
  };
  let stopping = false;

  /** The worker's (key, token) when its last event says it holds a lease. */
  const holding = (pid: number): { key: string; token: number } | undefined => {
    const last = [...events].reverse().find((event) => event.pid === pid && ['held', 'write', 'releasing', 'lost'].includes(event.kind));
    return last && (last.kind === 'held' || last.kind === 'write') ? { key: last.key, token: last.token } : undefined;
  };

  const faults: Record<FaultKind, () => Promise<void>> = {
    'pause-holder': async () => {
      const candidates = workers.filter((worker) => holding(worker.pid ?? 0));
      const worker = candidates[Math.floor(random() * candidates.length)] ?? workers[0];
      const held = holding(worker.pid ?? 0);
      const from = nowUs();
      worker.kill('SIGSTOP');
      await sleep(ttlMs * 2.5);
      const to = nowUs();
      worker.kill('SIGCONT');
      if (held) pauses.push({ pid: worker.pid ?? 0, ...held, from, to });
    },
    'kill-holder': async () => {
      const slot = Math.floor(random() * workers.length);
      killedByUs.add(workers[slot].pid ?? 0);
      workers[slot].kill('SIGKILL');
      await sleep(ttlMs);
      const restarted = spawnWorker(slot);
      // Not fatal when slow: a worker that never comes back shows as stalled at the end.
      await until(() => events.some((event) => event.pid === restarted.pid && event.kind === 'ready'), 60_000, 'restarted worker ready').catch(() =>
        log('restarted worker not ready within 60 s'),
      );
    },
    'pause-redis': async () => {
      primary.pause();
      await sleep(ttlMs * 2);
      primary.resume();
    },
    'restart-redis-empty': async () => {
      await primary.restart();
      // A promoted replica restarts with its original --replicaof: make it the primary again.
      await primary.cli('replicaof', 'no', 'one');
      await replica.cli('replicaof', '127.0.0.1', String(primary.port));
      await until(async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'), 30_000, 'replica back in sync');
    },
    'proxy-delay': async () => {
      proxy.delayMs = Math.round(ttlMs / 5);
      proxy.mode = 'delay';
      await sleep(ttlMs * 1.5);
      proxy.mode = 'pass';
    },
    'proxy-blackhole': async () => {
      proxy.mode = 'blackhole';
      await sleep(ttlMs * 2);
      proxy.mode = 'pass';
    },
    'promote-replica': async () => {
      await replica.cli('replicaof', 'no', 'one');
      proxy.targetPort = replica.port;
      proxy.resetConnections();
      // The old primary becomes a replica of the new one, dropping what the new one never got.
      await primary.cli('replicaof', '127.0.0.1', String(replica.port));
      [primary, replica] = [replica, primary];
      await until(async () => (await replica.cli('info', 'replication')).includes('master_link_status:up'), 30_000, 'old primary following');
    },
  };

  const injected = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, 0])) as Record<FaultKind, number>;
  try {
    for (let slot = 0; slot < workerCount; slot += 1) spawnWorker(slot);
    // Booting a worker (ts-node, Nest) takes seconds on a busy machine: faults start once all run.
    await until(() => workers.every((worker) => events.some((event) => event.pid === worker.pid && event.kind === 'held')), 120_000, 'every worker holding once');
    log(`workers running: ${events.length} events`);
    const startedAt = Date.now();
    const faultsUntil = startedAt + Math.max(0, seconds * 1_000 - quietMs);
    await sleep(2_000);
    // Every kind once in a seeded order, then seeded picks.
    const firstRound = [...FAULT_KINDS].sort(() => random() - 0.5);
    while (Date.now() < faultsUntil || firstRound.length > 0) {
      const kind = firstRound.shift() ?? FAULT_KINDS[Math.floor(random() * FAULT_KINDS.length)];
      const from = nowUs();
      log(`fault ${kind}`);
      await faults[kind]();
      windows.push({ kind, from, to: nowUs() });
      injected[kind] += 1;
      await sleep(500 + random() * 1_000);
    }
    const quietFrom = nowUs() + ttlMs * 3_000;
    await sleep(Math.max(quietMs, startedAt + seconds * 1_000 - Date.now()));
    const quietTo = nowUs();
    stopping = true;
    const live = workers.map((worker) => worker.pid ?? 0);
    const stalledWorkers = live.filter(
      (pid) => !events.some((event) => event.pid === pid && event.kind === 'write' && event.outcome === 'accepted' && event.at >= quietFrom && event.at <= quietTo),
    ).length;
    return {
      seed,
      seconds,
      workers: workerCount,
      replicaWorkers: Math.floor(workerCount / 2),
      injected,
      perKind: judge(events, accepted, windows, pauses, ttlMs, details),
      details,
      grants: events.filter((event) => event.kind === 'held').length,
      writesAccepted: resource.accepted,
      writesRefused: resource.refused,
      stalledWorkers,
      unhandledRejections: events.filter((event) => event.kind === 'unhandled').length,
      crashes,
    };
  } finally {
    stopping = true;
    for (const worker of workers) {
      worker.kill('SIGCONT');
      worker.kill('SIGKILL');
    }
    primary.resume();
    await proxy.close();
    await resource.close();
    await Promise.all([primary.destroy(), replica.destroy()]);
  }
}

function parseEvent(pid: number, line: string): Event {
  const fields = line.split(' ');
  // A write counts from its lease check: a pause after it is fencing's to catch (see README).
  const at = Number(fields[fields[0] === 'write' ? 5 : fields.length - 1]);
  const [kind, key = '', token = '0'] = fields;
  return { pid, kind, key, token: Number(token), outcome: kind === 'write' ? fields[4] : '', at };
}

type RunningHighest = Map<string, { at: number; highest: number }[]>;

/** Per key, in the given (time) order: each item's time and the highest token up to it. */
function runningHighest(items: readonly { key: string; token: number; at: number }[]): RunningHighest {
  const byKey: RunningHighest = new Map();
  for (const item of items) {
    const list = byKey.get(item.key) ?? [];
    list.push({ at: item.at, highest: Math.max(item.token, list[list.length - 1]?.highest ?? 0) });
    byKey.set(item.key, list);
  }
  return byKey;
}

/** The highest token in `byKey`'s list for `key` at a time before `at` (0 for none). */
function highestBefore(byKey: RunningHighest, key: string, at: number): number {
  const list = byKey.get(key) ?? [];
  let [low, high] = [0, list.length];
  while (low < high) {
    const middle = (low + high) >> 1;
    if (list[middle].at < at) low = middle + 1;
    else high = middle;
  }
  return low === 0 ? 0 : list[low - 1].highest;
}

/** Counts every property, attributing each violation to the fault window it falls in (`none` if outside all). */
function judge(
  events: readonly Event[],
  accepted: readonly { key: string; token: number; at: number }[],
  windows: readonly Window[],
  pauses: readonly { pid: number; key: string; token: number; from: number; to: number }[],
  ttlMs: number,
  details: string[],
): Record<FaultKind | 'none', Violations> {
  const perKind = Object.fromEntries([...FAULT_KINDS, 'none'].map((kind) => [kind, { doubleGrants: 0, overlaps: 0, tokensNotAbove: 0, lapsedWrites: 0 }])) as Record<
    FaultKind | 'none',
    Violations
  >;
  // A fault's effects last until every lease of its time has expired and been noticed.
  const reach = 2 * ttlMs * 1_000;
  const kindAt = (from: number, to = from): FaultKind | 'none' => windows.find((window) => from <= window.to + reach && to >= window.from)?.kind ?? 'none';

  // Accepted writes and grants per key, in time order, each with the highest token so far.
  const acceptedByKey = runningHighest(accepted);
  const grants = events.filter((event) => event.kind === 'held').sort((a, b) => a.at - b.at);
  const grantsByKey = runningHighest(grants);
  const grantedTo = new Map<string, number>();
  for (const held of grants) {
    const id = `${held.key}|${held.token}`;
    const first = grantedTo.get(id);
    if (first !== undefined && first !== held.pid) perKind[kindAt(held.at)].doubleGrants += 1;
    else grantedTo.set(id, held.pid);
    if (highestBefore(acceptedByKey, held.key, held.at) >= held.token) perKind[kindAt(held.at)].tokensNotAbove += 1;
  }
  // Two holders at once, as the resource sees it: a write decided by a holder after a newer
  // grant of its key (the older holder should have known its lease was gone).
  for (const write of events.filter((event) => event.kind === 'write')) {
    const newer = highestBefore(grantsByKey, write.key, write.at);
    if (newer <= write.token) continue;
    const kind = kindAt(write.at);
    perKind[kind].overlaps += 1;
    if (kind === 'none') details.push(`write on ${write.key} by pid ${write.pid} with token ${write.token} at ${write.at} µs after token ${newer} was granted`);
  }

  for (const pause of pauses.filter((candidate) => candidate.to - candidate.from > ttlMs * 1_000)) {
    perKind['pause-holder'].lapsedWrites += events.filter(
      (event) => event.kind === 'write' && event.pid === pause.pid && event.key === pause.key && event.token === pause.token && event.at > pause.to,
    ).length;
  }
  return perKind;
}

/** The report as a table, one row per fault kind. */
export function formatReport(report: ChaosReport): string {
  const rows = [...FAULT_KINDS, 'none' as const].map((kind) => {
    const v = report.perKind[kind];
    const count = kind === 'none' ? '-' : String(report.injected[kind]);
    return `${kind.padEnd(20)} ${count.padStart(8)} ${String(v.doubleGrants).padStart(13)} ${String(v.overlaps).padStart(9)} ${String(v.tokensNotAbove).padStart(15)} ${String(v.lapsedWrites).padStart(14)}`;
  });
  return [
    `chaos run: seed ${report.seed}, ${report.seconds} s; ${report.workers} workers (${report.replicaWorkers} with redis.replicas { min: 1 }); grants ${report.grants}, writes accepted ${report.writesAccepted}, refused ${report.writesRefused}`,
    `${'fault kind'.padEnd(20)} ${'injected'.padStart(8)} ${'double grants'.padStart(13)} ${'overlaps'.padStart(9)} ${'tokens ≤ before'.padStart(15)} ${'lapsed writes'.padStart(14)}`,
    ...rows,
    `stalled workers after the faults: ${report.stalledWorkers}; unhandled rejections: ${report.unhandledRejections}; crashes: ${report.crashes}`,
    ...report.details,
  ].join('\n');
}
