import { readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';
import { FileLockBackend, LockOptionsError, type FileStaleRecord, type LockRequest } from '../../lib';
import { keyFiles } from '../../lib/backends/file/lock-file-names';
import { exited, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { Kit } from './file-test-kit';
import { runCliProcess } from '../ops/ops-support';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

const owner = { ownerId: 'lock-file-test', instanceId: 'lock-file', hostname: hostname(), pid: process.pid };
let tokens = 0;
function request(key: string): LockRequest {
  return { key, token: `t${++tokens}`, ttlMs: 10_000, mode: 'exclusive', owner };
}

/** The lock file as format 2 lays it out: counter, record of the exclusive holder, descriptors kept open. */
describe('file backend: what the lock file keeps', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it('notices a lock file deleted or replaced while its descriptor was kept open, and locks the one the path names', async () => {
    const dir = kit.tempDir();
    const backend = new FileLockBackend({ dir });
    try {
      const files = keyFiles(await backend.directory(), 'lock:k');
      const first = request('lock:k');
      expect(await backend.tryAcquire(first)).toEqual({ acquired: true, fencingToken: 1 });
      expect(await backend.release(first)).toBe('released');

      const deleted = (): void => unlinkSync(files.anchorPath);
      const replaced = (): void => {
        writeFileSync(join(dir, 'new'), '');
        renameSync(join(dir, 'new'), files.anchorPath);
      };
      for (const change of [deleted, replaced]) {
        change();
        const again = request('lock:k');
        // A new file: its counter starts over (why lock files must never be deleted).
        expect(await backend.tryAcquire(again)).toEqual({ acquired: true, fencingToken: 1 });
        // Another process opening the path finds it held: we locked that file, not an orphan.
        await kit.start({ dir, key: 'k', action: 'hold' }).line(/^busy$/);
        expect(await backend.release(again)).toBe('released');
      }
      expect(statSync(files.anchorPath).nlink).toBe(1);
    } finally {
      await backend.close();
    }
  }, PROCESS_TEST_TIMEOUT_MS);

  it('keeps the exclusive holder in the lock file while held and marks it released after, without a record file', async () => {
    const dir = kit.tempDir();
    const backend = new FileLockBackend({ dir });
    try {
      const lease = request('lock:held');
      await backend.tryAcquire(lease);
      // The lock file is the only file: no holder record file, no records directory.
      expect(readdirSync(dir).filter((name) => !name.startsWith('.'))).toEqual([basename(keyFiles(dir, 'lock:held').anchorPath)]);
      expect(await backend.inspect('lock:held')).toEqual([expect.objectContaining({ fencingToken: 1, pid: process.pid, ownerId: 'lock-file-test' })]);
      // Another process reads the holder from it (the CLI, with its own backend).
      const listed = await runCliProcess(['inspect', 'held', '--dir', dir, '--json']);
      expect(JSON.parse(listed.stdout)).toMatchObject([{ key: 'held', holders: [{ pid: process.pid, fencingToken: 1, ownerId: 'lock-file-test' }] }]);

      await backend.release(lease);
      expect(await backend.inspect('lock:held')).toEqual([]);
      expect(JSON.parse((await runCliProcess(['inspect', 'held', '--dir', dir, '--json'])).stdout)).toMatchObject([{ key: 'held', holders: [] }]);
    } finally {
      await backend.close();
    }
  });

  it('a reader killed while holding leaves its record file; the next writer reports and removes it', async () => {
    const dir = kit.tempDir();
    const seen: FileStaleRecord[] = [];
    // Started first, so its start-up sweep runs before the reader dies and the writer finds the record.
    const backend = new FileLockBackend({ dir, onStale: (meta) => void seen.push(meta) });
    try {
      await backend.init();
      const reader = kit.start({ dir, key: 'shared', action: 'hold', mode: 'shared' });
      await reader.acquired();
      reader.child.kill('SIGKILL');
      await exited(reader.child);
      const files = keyFiles(await backend.directory(), 'lock:shared');
      writeFileSync(join(files.holdersPath, 'unrelated.txt'), '');
      const writer = request('lock:shared');
      expect(await backend.tryAcquire(writer)).toMatchObject({ acquired: true });
      expect(seen).toEqual([expect.objectContaining({ pid: reader.pid, mode: 'shared', detectedBy: 'acquire' })]);
      expect(readdirSync(files.holdersPath)).toEqual(['unrelated.txt']);
      await backend.release(writer);
    } finally {
      await backend.close();
    }
  }, PROCESS_TEST_TIMEOUT_MS);

  it('refuses a directory laid out by a version before format 2', async () => {
    const dir = kit.tempDir();
    writeFileSync(join(dir, '.mechanism'), 'kernel');
    const backend = new FileLockBackend({ dir });
    try {
      await expect(backend.init()).rejects.toThrow(LockOptionsError);
      await expect(backend.init()).rejects.toThrow(/'kernel' locks in format 1 \(another version of nestjs-lock\), this version writes 2/);
    } finally {
      await backend.close();
    }
  });
});
