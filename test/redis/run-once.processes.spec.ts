import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skewedClockEnv } from '../support/faketime';
import { checkOverlaps } from '../support/overlap-checker';
import { killAll, waitForLine } from '../support/processes';
import { uniquePrefix } from './redis-test-app';

/**
 * Run once across replicas, with real processes on the shared Redis: scheduled jobs under real
 * clock skew (libfaketime, Debian's `faketime`; .ci/run installs it) and leader election
 * through SIGTERM, SIGKILL and SIGSTOP.
 */
const ROOT = join(__dirname, '..', '..');
const FIXTURE = join(__dirname, 'fixtures', 'scheduled-replica.ts');
const REDIS_URL = 'redis://127.0.0.1:6379';

interface Replica {
  child: ChildProcess;
  name: string;
  /** Stdout lines with the test's clock when each arrived. */
  lines: { text: string; at: number }[];
}

function startReplica(jobs: string, name: string, env: NodeJS.ProcessEnv, skew?: string): Replica {
  const fake = skew ? skewedClockEnv(skew) : {};
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', FIXTURE, jobs], {
    cwd: ROOT,
    env: { ...process.env, TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'), NAME: name, ...env, ...fake },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const replica: Replica = { child, name, lines: [] };
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    const parts = (buffer + chunk).split('\n');
    buffer = parts.pop() ?? '';
    replica.lines.push(...parts.map((text) => ({ text, at: Date.now() })));
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    if (process.env.DEBUG_CHILDREN) process.stderr.write(`[${name}] ${chunk.toString()}`);
  });
  return replica;
}

function logLines(log: string): string[] {
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : [];
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Terms this replica was elected for, with when the test saw it. */
function elections(replica: Replica): { term: number; at: number }[] {
  return replica.lines.filter((line) => line.text.startsWith('elected ')).map((line) => ({ term: Number(line.text.split(' ')[1]), at: line.at }));
}

function alive(replica: Replica): boolean {
  return replica.child.exitCode === null && replica.child.signalCode === null;
}

function currentLeader(group: Replica[]): { replica: Replica; term: number } | undefined {
  for (const replica of group.filter(alive)) {
    const terms = elections(replica).map((election) => election.term);
    const revoked = replica.lines.filter((line) => line.text.startsWith('revoked ')).length;
    if (terms.length > revoked) return { replica, term: Math.max(...terms) };
  }
  return undefined;
}

/** Waits for a replica of `group` (other than `previous`) elected for a term above `term`. */
async function nextLeader(group: Replica[], term: number, timeoutMs: number, what: string): Promise<{ replica: Replica; term: number; at: number }> {
  let found: { replica: Replica; term: number; at: number } | undefined;
  await until(
    () => {
      for (const replica of group) {
        const election = elections(replica).find((candidate) => candidate.term > term);
        if (election) found = { replica, ...election };
      }
      return found !== undefined;
    },
    timeoutMs,
    what,
  );
  return found as { replica: Replica; term: number; at: number };
}

/** When the test saw `replica` print `line`. */
function seenAt(replica: Replica, line: string): number {
  const found = replica.lines.find((candidate) => candidate.text === line);
  if (!found) throw new Error(`${replica.name} did not print "${line}"`);
  return found.at;
}

const TTL_MS = 2_000;

describe('run once across replicas (real processes, real Redis, real clock skew)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'run-once-'));
  let group: Replica[] = [];

  beforeAll(async () => {
    const env = { BACKEND: 'redis', REDIS_URL, KEY_PREFIX: uniquePrefix('run-once'), LOG_DIR: dir, TTL_MS: String(TTL_MS) };
    // Three clocks ±150 ms apart, and a fourth replica so that two remain for the pause test.
    group = ['-0.15', '+0', '+0.15', '+0.05'].map((skew, index) => startReplica('cron,slow,leader', `r${index}`, env, skew));
    await Promise.all(group.map((replica) => waitForLine(replica.child, /^ready$/, 60_000)));
  }, 90_000);

  afterAll(async () => {
    const children = group.map((replica) => replica.child);
    children.forEach((child) => child.signalCode === 'SIGSTOP' && child.kill('SIGCONT'));
    await killAll(children);
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs every tick of a 1 s cron exactly once, none missed (either decorator order)', async () => {
    const log = join(dir, 'ticks.log');
    // The first and last seconds may see replicas still starting: judge the ticks in between.
    const started = logLines(log).length;
    await until(() => logLines(log).length >= started + 2 * 13, 20_000, '13 more ticks of both jobs');
    const ticks = new Map<string, string[]>();
    for (const line of logLines(log)) {
      const [, job, second, name] = line.split(' ');
      ticks.set(`${job} ${second}`, [...(ticks.get(`${job} ${second}`) ?? []), name]);
    }
    for (const job of ['a', 'b']) {
      const seconds = [...ticks.keys()].filter((tick) => tick.startsWith(`${job} `)).map((tick) => Number(tick.split(' ')[1]));
      const judged = seconds.sort((x, y) => x - y).slice(1, -1);
      expect(judged.length).toBeGreaterThanOrEqual(10);
      // None missed: every second between the first and last judged tick ran.
      expect(judged[judged.length - 1] - judged[0] + 1).toBe(judged.length);
      // Exactly once: one replica per tick.
      expect(judged.filter((second) => ticks.get(`${job} ${second}`)?.length !== 1)).toEqual([]);
    }
  }, 30_000);

  it('never runs a 2.5 s job on a 1 s cron twice at once', async () => {
    const log = join(dir, 'slow.log');
    await until(() => existsSync(log) && checkOverlaps(log).entries >= 3, 15_000, 'three runs');
    expect(checkOverlaps(log).overlaps).toBe(0);
  }, 20_000);

  it('hands leadership over at once on SIGTERM, within the TTL on SIGKILL, and fences a paused leader out', async () => {
    await until(() => currentLeader(group) !== undefined, 5_000, 'a first leader');
    let { replica: leader, term } = currentLeader(group) as { replica: Replica; term: number };

    // Graceful: the leader resigns in beforeApplicationShutdown; the first follower is pushed the lease.
    leader.child.kill('SIGTERM');
    const graceful = await nextLeader(group, term, 5_000, 'a takeover after SIGTERM');
    const gracefulMs = graceful.at - seenAt(leader, `revoked ${term}`);
    expect(gracefulMs).toBeLessThan(500);
    ({ replica: leader, term } = graceful);

    // Crash: the lease runs out; a follower's wait ends with it.
    const killedAt = Date.now();
    leader.child.kill('SIGKILL');
    const crash = await nextLeader(group.filter(alive), term, TTL_MS + 1_000, 'a takeover after SIGKILL');
    const crashMs = crash.at - killedAt;
    ({ replica: leader, term } = crash);

    // Paused past its TTL: another replica leads; resumed, the old leader runs nothing more under its term.
    leader.child.kill('SIGSTOP');
    let paused;
    try {
      paused = await nextLeader(group.filter((replica) => alive(replica) && replica !== leader), term, TTL_MS + 2_000, 'a takeover from the paused leader');
    } finally {
      leader.child.kill('SIGCONT');
    }
    await until(() => leader.lines.some((line) => line.text === `revoked ${term}`), 3_000, 'the resumed leader learning it lost');
    const log = join(dir, 'leader.log');
    const before = logLines(log).length;
    await until(() => logLines(log).length >= before + 10, 3_000, 'the new leader running');

    const runs = logLines(log).map((line) => Number(line.split(' ')[1]));
    expect(runs.every((run) => Number.isInteger(run))).toBe(true);
    // Counted at the shared log: no run of a term after the first run of a later term.
    const lateRuns = runs.filter((run, index) => runs.slice(0, index).some((earlier) => earlier > run));
    expect(lateRuns).toEqual([]);
    expect(runs).toContain(paused.term);
    process.stdout.write(`redis leader takeover: ${gracefulMs} ms after the resignation, ${crashMs} ms after SIGKILL (TTL ${TTL_MS} ms)\n`);
  }, 30_000);
});

describe('leader election on the file backend (real processes)', () => {
  it('hands over at once on SIGTERM, and at once on SIGKILL (the kernel drops the lock)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-once-file-'));
    const env = { BACKEND: 'file', LOCK_DIR: join(dir, 'locks'), KEY_PREFIX: uniquePrefix('file-leader'), LOG_DIR: dir, TTL_MS: '30000' };
    const group = ['r0', 'r1', 'r2'].map((name) => startReplica('leader', name, env));
    try {
      await Promise.all(group.map((replica) => waitForLine(replica.child, /^ready$/, 60_000)));
      await until(() => currentLeader(group) !== undefined, 5_000, 'a first leader');
      let { replica: leader, term } = currentLeader(group) as { replica: Replica; term: number };
      leader.child.kill('SIGTERM');
      const graceful = await nextLeader(group, term, 5_000, 'a takeover after SIGTERM');
      expect(graceful.at - seenAt(leader, `revoked ${term}`)).toBeLessThan(500);
      ({ replica: leader, term } = graceful);
      const killedAt = Date.now();
      leader.child.kill('SIGKILL');
      // Far inside the 30 s TTL: nothing waits for a lease to run out.
      const crash = await nextLeader(group.filter(alive), term, 5_000, 'a takeover after SIGKILL');
      expect(crash.at - killedAt).toBeLessThan(2_000);
    } finally {
      await killAll(group.map((replica) => replica.child));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
