/**
 * The skew bound behind the README's scheduled-jobs section: three replicas of an app with a
 * 1 s `@Cron` + `@WithLock` job (5 ms of work) on one Redis, their clocks −S, 0 and +S apart
 * (libfaketime), counting for each tick how many replicas ran it.
 *   node -r ts-node/register/transpile-only bench/skew-bound.ts [--ticks 12] [--redis URL] [--skews 400,440]
 * (`--skews`: only these S, in ms, with the default hold).
 * Needs Debian's `faketime` package (libfaketime) and a Redis (default 127.0.0.1:6379).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { skewedClockEnv } from '../test/support/faketime';

const ROOT = join(__dirname, '..');
const FIXTURE = join(ROOT, 'test', 'redis', 'fixtures', 'scheduled-replica.ts');

interface Trial {
  skewMs: number;
  /** `undefined`: the default derived from the schedule. */
  minHoldMs?: number;
}

const TRIALS: Trial[] = [
  { skewMs: 150, minHoldMs: 0 },
  { skewMs: 0 },
  { skewMs: 150 },
  { skewMs: 300 },
  { skewMs: 400 },
  { skewMs: 440 },
  { skewMs: 500 },
  { skewMs: 600 },
];

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1] : fallback;
}

async function trial({ skewMs, minHoldMs }: Trial, ticks: number, redisUrl: string, index: number): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'skew-bound-'));
  const env = {
    ...process.env,
    TS_NODE_PROJECT: join(ROOT, 'tsconfig.json'),
    BACKEND: 'redis',
    REDIS_URL: redisUrl,
    KEY_PREFIX: `skew-bound-${process.pid}-${index}:`,
    LOG_DIR: dir,
    ...(minHoldMs === undefined ? {} : { MIN_HOLD_MS: String(minHoldMs) }),
  };
  const skews = [-skewMs, 0, skewMs].map((ms) => `${ms >= 0 ? '+' : ''}${(ms / 1_000).toFixed(3)}`);
  const children: ChildProcess[] = skews.map((skew, replica) =>
    spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', FIXTURE, 'cron'], {
      cwd: ROOT,
      env: { ...env, NAME: `r${replica}`, ...skewedClockEnv(skew) },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  try {
    await Promise.all(children.map((child) => new Promise((resolve) => child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve(null)))));
    const log = join(dir, 'ticks.log');
    const lines = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean) : []);
    const seconds = (): number[] => [...new Set(lines().filter((line) => line.startsWith('tick a ')).map((line) => Number(line.split(' ')[2])))];
    const first = Math.max(0, ...seconds());
    while (seconds().filter((second) => second > first).length < ticks + 1) await new Promise((resolve) => setTimeout(resolve, 100));
    const judged = seconds().filter((second) => second > first).sort((a, b) => a - b).slice(0, ticks);
    const runs = judged.map((second) => lines().filter((line) => line.startsWith(`tick a ${second} `)).length);
    const missed = judged[judged.length - 1] - judged[0] + 1 - judged.length;
    return [
      `±${skewMs} ms (spread ${2 * skewMs} ms)`,
      minHoldMs === undefined ? 'default (from the schedule)' : `${minHoldMs} ms`,
      String(judged.length),
      String(runs.filter((count) => count === 1).length),
      String(runs.filter((count) => count > 1).length),
      String(missed),
    ];
  } finally {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const ticks = Number(option('ticks', '12'));
  const redisUrl = option('redis', 'redis://127.0.0.1:6379');
  const rows: string[][] = [];
  const only = process.argv.includes('--skews') ? option('skews', '').split(',').map(Number) : null;
  const trials = only ? only.map((skewMs) => ({ skewMs })) : TRIALS;
  for (const [index, config] of trials.entries()) {
    rows.push(await trial(config, ticks, redisUrl, index));
    process.stderr.write(`${rows[rows.length - 1].join(' | ')}\n`);
  }
  const header = ['clocks', 'minHoldMs', 'ticks judged', 'ran once', 'ran 2+ times', 'missed'];
  process.stdout.write(
    [header, header.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n') + '\n',
  );
}

void main();
