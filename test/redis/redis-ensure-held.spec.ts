import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { lockKeys } from '../../lib/backends/redis/redis-lock-keys';
import { spawnTs, waitForLine } from '../support/processes';
import { RedisServer, until } from '../support/redis-server';
import { uniquePrefix } from './redis-test-app';

/** Every stdout line of `child`, as it arrives. */
function lines(child: ChildProcess): string[] {
  const seen: string[] = [];
  let buffer = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    seen.push(...parts);
  });
  return seen;
}

describe('ensureHeld() in a real process stopped with SIGSTOP past its lease', () => {
  let redis: RedisServer;
  let worker: ChildProcess | undefined;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterEach(() => {
    worker?.kill('SIGKILL');
    worker = undefined;
  });
  afterAll(() => redis.destroy());

  it('the resumed holder stops before its first write: no write after SIGCONT, the signal aborted at once', async () => {
    const prefix = uniquePrefix('sigstop');
    const ttlMs = 1_000;
    worker = spawnTs(join(__dirname, '../chaos/fenced-writer.ts'), [], {
      REDIS_URL: redis.url, KEY_PREFIX: prefix, KEYS: 'job', TTL_MS: String(ttlMs), STEP_MS: '20', CHECK: 'ensureHeld',
    });
    const output = lines(worker);
    // Booting ts-node and Nest takes long on a busy machine.
    await waitForLine(worker, /^write job \d+ 5 /, 90_000);

    worker.kill('SIGSTOP');
    // Redis expires the lease on its own clock while the holder cannot run.
    await until(async () => (await redis.cli('exists', lockKeys(`${prefix}job`).lease)) === '0', 5_000, 'lease expired in Redis');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const writesBefore = output.filter((line) => line.startsWith('write ')).length;
    const stoppedFor = output.length;
    worker.kill('SIGCONT');

    const [, reason, aborted] = await waitForLine(worker, /^lost job (\S+) (\S+) /, 10_000);
    expect(reason).toBe('lease-timed-out');
    expect(aborted).toBe('true');
    const afterResume = output.slice(stoppedFor);
    const lostAt = afterResume.findIndex((line) => line.startsWith('lost '));
    expect(afterResume.slice(0, lostAt).filter((line) => line.startsWith('write '))).toEqual([]);
    expect(writesBefore).toBeGreaterThan(5);
  }, 150_000);
});
