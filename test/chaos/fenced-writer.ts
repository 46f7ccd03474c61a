/**
 * A worker process that takes Redis locks and writes under them, for the pause tests and the
 * chaos suite. One event per line, each ending with CLOCK_MONOTONIC in µs (shared by every
 * process of the host, so the test can order events of several workers):
 *   `ready T`, `held KEY FENCE T`, `write KEY FENCE SEQ OUTCOME CHECKED_AT T` (CHECKED_AT: when the
 *   lease check before it passed, the moment the write was decided), `lost KEY REASON SIGNAL_ABORTED T`,
 *   `releasing KEY FENCE T`, `miss KEY ERROR T`, `unhandled MESSAGE T`.
 * Before each write it checks the lease as CHECK says: `ensureHeld` (the synchronous check) or
 * `signal` (only `lock.signal.aborted`, what callers did before `ensureHeld`). With WRITE_URL
 * each write is POSTed to the fenced resource there (OUTCOME accepted / refused / failed);
 * without, OUTCOME is `local`.
 * Env: REDIS_URL, KEY_PREFIX, KEYS (comma-separated, taken in turn), TTL_MS, STEP_MS (between
 * writes), WRITES (per hold), CHECK, WRITE_URL, REPLICAS (`1`: `redis.replicas: { min: 1 }`, every
 * grant, hand-off and release confirmed by the replica).
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { LockModule, SpaceLockService, type HeldLock } from '../../lib';

function env(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
}

const micros = (): string => String(process.hrtime.bigint() / 1_000n);
const say = (...fields: (string | number | boolean)[]): void => void process.stdout.write(`${[...fields, micros()].join(' ')}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const word = (text: string): string => text.replace(/\s+/g, '_').slice(0, 80);

process.on('unhandledRejection', (reason) => say('unhandled', word(String(reason))));

function check(lock: HeldLock, how: string): void {
  if (how === 'ensureHeld') lock.ensureHeld();
  else if (lock.signal.aborted) throw lock.signal.reason;
}

async function write(url: string | undefined, key: string, fencingToken: number): Promise<string> {
  if (!url) return 'local';
  try {
    const response = await fetch(url, { method: 'POST', body: JSON.stringify({ key, fencingToken, pid: process.pid }), signal: AbortSignal.timeout(2_000) });
    return response.status === 200 ? 'accepted' : 'refused';
  } catch {
    return 'failed';
  }
}

async function main(): Promise<void> {
  const ttlMs = Number(env('TTL_MS', '1000'));
  const stepMs = Number(env('STEP_MS', '20'));
  const writes = Number(env('WRITES', '1000000'));
  const how = env('CHECK', 'ensureHeld');
  const keys = env('KEYS').split(',');
  const writeUrl = process.env.WRITE_URL;
  const app = await NestFactory.createApplicationContext(
    LockModule.forRoot({
      backend: 'redis',
      redis: { url: env('REDIS_URL'), ...(process.env.REPLICAS === '1' ? { replicas: { min: 1, timeoutMs: 300 } } : {}) },
      keyPrefix: env('KEY_PREFIX'),
      ttlMs,
      backendTimeoutMs: 500,
    }),
    { logger: false },
  );
  await app.init();
  const locks = app.get(SpaceLockService);
  say('ready');
  for (let round = 0; ; round += 1) {
    const key = keys[round % keys.length];
    let lock: HeldLock;
    try {
      lock = await locks.acquire(key, { waitMs: 2_000 });
    } catch (error) {
      say('miss', key, (error as Error).name);
      await sleep(stepMs);
      continue;
    }
    say('held', key, lock.fencingToken);
    try {
      for (let seq = 0; seq < writes; seq += 1) {
        await sleep(stepMs);
        check(lock, how);
        const checkedAt = micros();
        say('write', key, lock.fencingToken, seq, await write(writeUrl, key, lock.fencingToken), checkedAt);
      }
    } catch (error) {
      say('lost', key, (error as { reason?: string }).reason ?? (error as Error).name, lock.signal.aborted);
    }
    say('releasing', key, lock.fencingToken);
    await lock.release().catch(() => undefined);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
