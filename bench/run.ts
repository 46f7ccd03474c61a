/**
 * nestjs-lock benchmarks side by side with redlock, redis-semaphore, async-mutex and
 * proper-lockfile. `npm run bench` (full) or `npm run bench -- --quick` (< 1 min).
 * Options: `--only 1,5` runs some scenarios; `--write FILE` also writes the markdown there;
 * `--telemetry absent|api|sdk` sets what OpenTelemetry every process finds (harness/telemetry-mode.ts).
 */
import { execSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { table, verdictLine, type Verdict } from './harness/format';
import type { BenchContext, Scenario } from './harness/context';
import { planPlacement, RedisServer } from './harness/redis-server';
import { SCENARIOS } from './scenarios';
import { stopIdleWorkers } from './harness/workers';
import { childSpec, runChild, runIsolated } from './harness/isolated';
import { applyTelemetryMode, setTelemetryMode, telemetryMode } from './harness/telemetry-mode';

interface Args {
  telemetry: string | null;
  quick: boolean;
  only: Set<number> | null;
  write: string | null;
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { quick: false, only: null, write: null, telemetry: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') args.quick = true;
    else if (arg === '--only') args.only = new Set(argv[++i].split(',').map(Number));
    else if (arg.startsWith('--only=')) args.only = new Set(arg.slice(7).split(',').map(Number));
    else if (arg === '--telemetry') args.telemetry = argv[++i];
    else if (arg.startsWith('--telemetry=')) args.telemetry = arg.slice(12);
    else if (arg === '--write') args.write = argv[++i];
    else if (arg.startsWith('--write=')) args.write = arg.slice(8);
    else throw new Error(`unknown argument ${arg}`);
  }
  return args;
}

function gitHead(): string {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const log = (message: string): void => void process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${message}\n`);
  applyTelemetryMode();
  const spec = childSpec();
  if (spec) return runChild(spec, SCENARIOS, log);
  const args = parseArgs(process.argv.slice(2));
  if (args.telemetry) {
    setTelemetryMode(args.telemetry);
    applyTelemetryMode();
  }
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const startedAt = new Date();
  const placement = planPlacement();
  const redis = await RedisServer.start(placement);
  const admin = redis.client();
  const tmpDir = mkdtempSync(join(tmpdir(), 'nestjs-lock-bench-'));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      void Promise.all([redis.stop(), stopIdleWorkers()]).finally(() => process.exit(130));
    });
  }
  const context: BenchContext = {
    quick: args.quick,
    reps: args.quick ? 3 : 5,
    windowMs: args.quick ? 150 : 1_000,
    warmupMs: args.quick ? 50 : 300,
    admin,
    placement,
    tmpDir,
    locks: { redisUrl: redis.url, fileDir: join(tmpDir, 'locks'), ttlMs: 30_000 },
    log,
  };
  const facts = [
    `- Command: \`${command}\` (${args.quick ? 'quick' : 'full'} run), commit ${gitHead()}, started ${startedAt.toISOString()}`,
    `- Machine: ${cpus().length} CPU(s), ${cpus()[0]?.model ?? 'unknown CPU'}; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' / ')}`,
    `- Node ${process.version}, redis-server ${redis.version} (private, 127.0.0.1:${redis.port}, no persistence)`,
    `- Placement: ${placement.description}`,
    `- OpenTelemetry: ${telemetryMode() ?? 'as installed (API present, no SDK)'}`,
    `- Method: ${args.quick ? 'all scenarios in this process' : 'every scenario in a fresh Node process'}; interleaved repetitions (every contender once per repetition, rotated order), median of ${context.reps}; windows of ${context.windowMs} ms after ${context.warmupMs} ms warm-up unless a scenario says otherwise. Node CPU = process.cpuUsage() delta of the process running the contender.`,
  ];
  log(facts.join('\n'));
  const sections: string[] = [];
  const verdicts: Verdict[] = [];
  const selected: Scenario[] = SCENARIOS.filter((scenario) => !args.only || args.only.has(scenario.id));
  try {
    for (const scenario of selected) {
      log(`scenario ${scenario.id}: ${scenario.title}`);
      const started = performance.now();
      let section = `## ${scenario.id}. ${scenario.title}\n\n`;
      try {
        // A quick run stays in one process: it is a smoke test, and the start-up of a process
        // per scenario would double its time.
        const result = args.quick ? await scenario.run(context) : await runIsolated(scenario, context, __filename);
        section += `${result.body}\n`;
        if (result.verdicts.length > 0) section += `\n${result.verdicts.map(verdictLine).join('\n')}\n`;
        verdicts.push(...result.verdicts);
      } catch (error) {
        section += `Failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`;
        verdicts.push({ scenario: String(scenario.id), target: scenario.title, measured: 'scenario failed', met: false });
      }
      await stopIdleWorkers();
      section += `\n_(${((performance.now() - started) / 1000).toFixed(1)} s)_\n`;
      process.stdout.write(`\n${section}`);
      sections.push(section);
    }
  } finally {
    admin.disconnect();
    await redis.stop();
    rmSync(tmpDir, { recursive: true, force: true });
  }
  const summary = table(
    ['scenario', 'target', 'measured', 'verdict'],
    verdicts.map((v) => [v.scenario, v.target, v.measured, v.met === null ? 'report' : v.met ? 'met' : '**missed**']),
  );
  const document = [
    '# Benchmark results',
    '',
    ...facts,
    `- Total time: ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    '',
    '## Targets',
    '',
    summary,
    '',
    ...sections,
  ].join('\n');
  process.stdout.write(`\n## Targets\n\n${summary}\n`);
  if (args.write) {
    // Hand-written analysis of the misses, kept next to the numbers.
    const notesPath = join(__dirname, 'NOTES.md');
    const notes = existsSync(notesPath) ? `\n${readFileSync(notesPath, 'utf8')}` : '';
    writeFileSync(args.write, `${document}\n${notes}`);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
