// The compatibility suite: pack nestjs-lock, install the tarball with a plain `npm install` into a
// small app per supported line (compat/app), compile it with `strict` on and run its e2e on memory
// and on a private redis-server, the Terminus health indicator (Nest 11 and 12 rows), then the
// README's "Testing your app" example and the CLI bin.
//
//   npm run test:compat [-- --keep] [-- --only nest12-esm-ts6,nest11-cjs]
//
// One npm cache inside the run's own folder, so every run, like CI's, starts cold.
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RedisServer } from '../test/support/redis-server';

type ModuleSystem = 'esm' | 'cjs';
type TestRunner = 'vitest' | 'jest';

interface Row {
  name: string;
  moduleSystem: ModuleSystem;
  testRunner: TestRunner;
  dependencies: Record<string, string>;
}

const shared = { 'reflect-metadata': '^0.2.0', rxjs: '^7.8.0', supertest: '^7.0.0', '@types/supertest': '^6.0.0', '@types/node': '^20.19.0' };
const vitest = { vitest: '^4.1.0', 'unplugin-swc': '^2.0.0', '@swc/core': '^1.16.0' };
const jest = { jest: '^29.7.0', 'ts-jest': '^29.4.0', '@types/jest': '^29.5.0' };
const nest12 = {
  '@nestjs/common': '^12.0.0',
  '@nestjs/core': '^12.0.0',
  '@nestjs/platform-express': '^12.0.0',
  '@nestjs/testing': '^12.0.0',
  '@nestjs/schedule': '^12.0.0',
  '@nestjs/terminus': '^12.0.0',
  ioredis: '^6.0.0',
};

const rows: Row[] = [
  { name: 'nest12-esm-ts6', moduleSystem: 'esm', testRunner: 'vitest', dependencies: { ...shared, ...vitest, ...nest12, typescript: '~6.0.0' } },
  { name: 'nest12-esm-ts7', moduleSystem: 'esm', testRunner: 'vitest', dependencies: { ...shared, ...vitest, ...nest12, typescript: '~7.0.0' } },
  {
    name: 'nest11-cjs',
    moduleSystem: 'cjs',
    testRunner: 'jest',
    dependencies: {
      ...shared,
      ...jest,
      '@nestjs/common': '^11.0.0',
      '@nestjs/core': '^11.0.0',
      '@nestjs/platform-express': '^11.0.0',
      '@nestjs/testing': '^11.0.0',
      '@nestjs/schedule': '^6.0.0',
      '@nestjs/terminus': '^11.0.0',
      ioredis: '^5.0.0',
      typescript: '~5.9.0',
    },
  },
  {
    name: 'nest10-cjs',
    moduleSystem: 'cjs',
    testRunner: 'jest',
    dependencies: {
      ...shared,
      ...jest,
      '@nestjs/common': '^10.0.0',
      '@nestjs/core': '^10.0.0',
      '@nestjs/platform-express': '^10.0.0',
      '@nestjs/testing': '^10.0.0',
      '@nestjs/schedule': '^4.0.0',
      ioredis: '^5.0.0',
      typescript: '~5.9.0',
    },
  },
];

/** Versions reported per row: what `npm install` actually picked. */
const reported = ['@nestjs/core', '@nestjs/schedule', '@nestjs/terminus', 'ioredis', 'typescript', 'vitest', '@swc/core', 'jest'];

const compilerOptions = {
  target: 'ES2022',
  strict: true,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
  esModuleInterop: true,
  // As `nest new` scaffolds it: ioredis 6's own declarations do not compile without it.
  skipLibCheck: true,
  outDir: 'dist',
  rootDir: '.',
  types: ['node'],
};
const tsconfigs: Record<ModuleSystem, object> = {
  esm: { compilerOptions: { ...compilerOptions, module: 'nodenext', moduleResolution: 'nodenext' }, include: ['src', 'test'] },
  // moduleResolution node10 (TypeScript 5's default for CommonJS) reads "types"; nodenext reads "exports".
  cjs: { compilerOptions: { ...compilerOptions, module: 'commonjs', moduleResolution: 'node10', types: ['node', 'jest'] }, include: ['src', 'test'] },
};

const repo = resolve(__dirname, '..');
const appSource = join(__dirname, 'app');

interface Outcome {
  row: Row;
  versions: Record<string, string>;
  seconds: number;
  error?: string;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    // npm run passes its own npm_config_* down; the apps' installs must see only what we give them.
    const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
    const child = spawn(command, args, { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolvePromise(output);
      else reject(new Error(`${command} ${args.join(' ')} in ${cwd} exited ${code ?? signal}:\n${output}`));
    });
  });
}

/** Any peer-dependency complaint about us fails the row; other warnings are shown, not judged. */
function checkInstallOutput(output: string): string[] {
  const warnings = output.split('\n').filter((line) => /\bwarn\b/i.test(line));
  const aboutUs = output.split('\n').filter((line) => /ERESOLVE|peer/i.test(line) && /nestjs-lock/.test(line));
  if (aboutUs.length > 0) throw new Error(`npm install complained about nestjs-lock's peers:\n${aboutUs.join('\n')}`);
  return warnings;
}

function writeApp(row: Row, dir: string, tarball: string): void {
  cpSync(join(appSource, 'src'), join(dir, 'src'), { recursive: true });
  cpSync(join(appSource, 'test'), join(dir, 'test'), { recursive: true });
  if (row.moduleSystem === 'cjs') rmSync(join(dir, 'src', 'single-instance.ts'));
  // Terminus is an optional peer for Nest 11 and 12 only (its HealthIndicatorService API).
  if (!hasTerminus(row)) rmSync(join(dir, 'src', 'health.ts'));
  if (row.testRunner === 'vitest') cpSync(join(appSource, 'vitest.config.ts'), join(dir, 'vitest.config.ts'));
  else {
    const spec = join(dir, 'test', 'spaces.spec.ts');
    writeFileSync(spec, readFileSync(spec, 'utf8').replace(/^import .* from 'vitest';\n/m, ''));
  }
  const jestConfig = {
    preset: 'ts-jest',
    testEnvironment: 'node',
    roots: ['<rootDir>/test'],
    // The example imports '../src/spaces.controller.js' as NodeNext wants; CommonJS Jest maps it to the .ts file.
    moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  };
  const manifest = {
    name: `compat-${row.name}`,
    private: true,
    ...(row.moduleSystem === 'esm' ? { type: 'module' } : {}),
    dependencies: { ...row.dependencies, 'nestjs-lock': `file:${tarball}` },
    ...(row.testRunner === 'jest' ? { jest: jestConfig } : {}),
    // @swc/core's postinstall only checks its prebuilt binary, which its optional dependency brings;
    // @nestjs/core 10's asks for donations.
    allowScripts: { '@swc/core': false, '@nestjs/core': false },
  };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(dir, 'tsconfig.json'), `${JSON.stringify(tsconfigs[row.moduleSystem], null, 2)}\n`);
}

function hasTerminus(row: Row): boolean {
  return '@nestjs/terminus' in row.dependencies;
}

async function runRow(row: Row, work: string, tarball: string, cache: string, redisUrl: string): Promise<Outcome> {
  const started = performance.now();
  const dir = join(work, row.name);
  const versions: Record<string, string> = {};
  const log = (message: string): void => console.log(message.replace(/^/gm, `[${row.name}] `));
  try {
    mkdirSync(dir);
    writeApp(row, dir, tarball);
    const install = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--cache', cache], dir);
    for (const warning of checkInstallOutput(install)) log(`npm: ${warning}`);
    for (const name of reported) {
      try {
        versions[name] = (JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
      } catch {
        // not part of this row
      }
    }
    log(`installed ${Object.entries(versions).map(([name, version]) => `${name}@${version}`).join(' ')}`);
    await run(join(dir, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], dir);
    log('compiled with strict on');
    log((await run('node', ['dist/src/e2e.js'], dir, { REDIS_URL: redisUrl })).trim());
    if (row.moduleSystem === 'esm') log((await run('node', ['dist/src/single-instance.js'], dir)).trim());
    if (hasTerminus(row)) log((await run('node', ['dist/src/health.js'], dir, { REDIS_URL: redisUrl })).trim());
    const tests = row.testRunner === 'vitest' ? ['vitest', 'run'] : ['jest'];
    await run(join(dir, 'node_modules/.bin', tests[0]!), tests.slice(1), dir, { CI: 'true' });
    log(`README example passes under ${row.testRunner}`);
    const help = await run(join(dir, 'node_modules/.bin/nestjs-lock'), ['--help'], dir);
    if (!/nestjs-lock/.test(help)) throw new Error(`nestjs-lock --help printed no usage:\n${help}`);
    log('CLI bin answers --help');
    return { row, versions, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    return { row, versions, seconds: (performance.now() - started) / 1000, error: error instanceof Error ? error.message : String(error) };
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const keep = args.includes('--keep');
  const onlyIndex = args.indexOf('--only');
  const only = onlyIndex >= 0 ? (args[onlyIndex + 1] ?? '').split(',') : undefined;
  const selected = only ? rows.filter((row) => only.includes(row.name)) : rows;
  if (selected.length === 0) throw new Error(`--only names none of ${rows.map((row) => row.name).join(', ')}`);

  const started = performance.now();
  const example = readFileSync(join(appSource, 'test', 'spaces.spec.ts'), 'utf8');
  if (!readFileSync(join(repo, 'README.md'), 'utf8').includes(example.slice(example.indexOf("import 'reflect-metadata';")))) {
    throw new Error("README's Testing your app example differs from compat/app/test/spaces.spec.ts");
  }
  const work = mkdtempSync(join(tmpdir(), 'nestjs-lock-compat-'));
  const cache = join(work, 'npm-cache');
  console.log(`compat: working in ${work}`);
  await run('npm', ['pack', '--pack-destination', work, '--cache', cache], repo);
  const { version } = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };
  const tarball = join(work, `nestjs-lock-${version}.tgz`);
  const redis = await RedisServer.start();
  const outcomes: Outcome[] = [];
  try {
    // Two rows at a time: an install mostly waits on the network, a row's tests mostly on one core.
    const queue = [...selected];
    const worker = async (): Promise<void> => {
      for (let row = queue.shift(); row; row = queue.shift()) outcomes.push(await runRow(row, work, tarball, cache, redis.url));
    };
    await Promise.all([worker(), worker()]);
    outcomes.sort((a, b) => selected.indexOf(a.row) - selected.indexOf(b.row));
  } finally {
    await redis.destroy();
  }

  console.log(`\n| row | ${reported.join(' | ')} | seconds | result |`);
  console.log(`|---|${reported.map(() => '---|').join('')}---|---|`);
  for (const { row, versions, seconds, error } of outcomes) {
    console.log(`| ${row.name} | ${reported.map((name) => versions[name] ?? '-').join(' | ')} | ${seconds.toFixed(0)} | ${error ? 'FAIL' : 'pass'} |`);
  }
  const failed = outcomes.filter((outcome) => outcome.error);
  for (const { row, error } of failed) console.error(`\n[${row.name}] FAILED: ${error}`);
  if (failed.length === 0 && !keep) rmSync(work, { recursive: true, force: true });
  else console.log(`compat: left ${work} for a look`);
  console.log(`\ncompat: node ${process.version}, ${((performance.now() - started) / 1000).toFixed(0)} s with the clean-up`);
  console.log(`${outcomes.length - failed.length} passed, ${failed.length} failed`);
  process.exitCode = failed.length === 0 ? 0 : 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
