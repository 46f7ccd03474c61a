import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../support/redis-server';
import { runCli } from '../../lib/cli/run';
import { recordingIo, runCliProcess } from './ops-support';
import { PROCESS_TEST_TIMEOUT_MS } from '../support/processes';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

/** What the CLI answers before (or instead of) talking to any store. */
describe('nestjs-lock CLI: usage and unusable stores', () => {
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), 'nestjs-lock-ops-cli-'));
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('--help prints the commands and the exit codes, exit 0', async () => {
    const result = await runCliProcess(['--help']);
    expect(result.code).toBe(0);
    for (const word of ['list', 'inspect KEY...', 'reap KEY --reason', 'Exit codes', '--redis URL', '--dir PATH']) {
      expect(result.stdout).toContain(word);
    }
  });

  it.each([
    [['frobnicate', '--dir', '.'], /Unknown command "frobnicate"/],
    [['list'], /--redis URL .* or --dir PATH/],
    [['list', '--redis', 'redis://127.0.0.1:1', '--dir', '.'], /either --redis or --dir/],
    [['list', '--dir', '.', '--yes'], /--yes does not apply to "list"/],
    [['list', '--dir', '.', '--limit', 'ten'], /--limit must be a whole number/],
    [['inspect', '--dir', '.'], /Usage: nestjs-lock inspect KEY/],
    [['inspect', '--dir', '.', 'bad\u0007key'], /Invalid lock key/],
    [['reap', 'job', '--dir', '.'], /needs --reason/],
    [['reap', 'job', '--dir', '.', '--reason', 'x', '--expect-token=-1'], /--expect-token must be a whole number/],
    [['list', '--dir', '.', '--bogus'], /Unknown option '--bogus'/],
  ])('usage error %j: exit 1 with a one-line reason', async (args, message) => {
    const io = recordingIo();
    expect(await runCli(args, io)).toBe(1);
    expect(io.stderr).toMatch(message);
    expect(io.stdout).toBe('');
  });

  it('reap without --yes and without a terminal refuses (exit 3) before touching any store', async () => {
    const io = recordingIo();
    const missing = join(scratch, 'never-looked-at');
    expect(await runCli(['reap', 'job', '--reason', 'stuck', '--dir', missing], io)).toBe(3);
    expect(io.stderr).toMatch(/stdin is not a terminal.*--yes/);
  });

  it('a missing lock directory: exit 2, named, and not created', async () => {
    const missing = join(scratch, 'no-such-dir');
    const result = await runCliProcess(['list', '--dir', missing]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`Lock directory ${missing} does not exist`);
    expect(existsSync(missing)).toBe(false);
  });

  it('an unreachable Redis: exit 2 with the cause, quickly, password not echoed', async () => {
    // Nothing listens on a port the kernel just handed out and took back.
    const port = await freePort();
    const result = await runCliProcess(['list', '--redis', `redis://:hunter2@127.0.0.1:${port}`, '--timeout', '1500']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(new RegExp(`Could not reach Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}.*ECONNREFUSED`));
    expect(result.stderr).not.toContain('hunter2');
    expect(result.elapsedMs).toBeLessThan(10_000);
  });

  it('a Redis that accepts but never answers: exit 2 after --timeout, no hang', async () => {
    const { createServer } = await import('node:net');
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const result = await runCliProcess(['inspect', 'job', '--redis', `redis://127.0.0.1:${port}`, '--timeout', '800']);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/Could not reach Redis .*(no answer within 800 ms|timeout)/i);
      expect(result.elapsedMs).toBeLessThan(10_000);
    } finally {
      silent.close();
    }
  });
});
