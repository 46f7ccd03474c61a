import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { FileLockBackend, type LockMode, type LockRequest } from '../../lib';
import { keyFiles } from '../../lib/backends/file/lock-file-names';
import { Kit } from './file-test-kit';

const owner = { ownerId: 'format-test', instanceId: 'format', hostname: hostname(), pid: process.pid };
let tokens = 0;
function request(key: string, mode: LockMode = 'exclusive'): LockRequest {
  return { key, token: `f${++tokens}`, ttlMs: 10_000, mode, owner };
}
const digits = (value: number): string => String(value).padStart(19, '0');

/**
 * The lock file's bytes, format 2 (README, "Files in dir"): every process using a directory
 * reads what the others wrote, so the layout is a contract. This is the one place that pins
 * it; the other file tests check behaviour through the backend.
 */
describe('lock file format 2 (kernel mechanism)', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it('a 42-byte header (counter, shared-records flag, released token), then the exclusive holder as one JSON line', async () => {
    const backend = new FileLockBackend({ dir: kit.tempDir() });
    try {
      const files = keyFiles(await backend.directory(), 'lock:held');
      const lease = request('lock:held');
      await backend.tryAcquire(lease);
      const held = readFileSync(files.anchorPath, 'utf8');
      expect(held.slice(0, 42)).toBe(`${digits(1)} - ${digits(0)}\n`);
      expect(JSON.parse(held.slice(42).split('\n')[0])).toMatchObject({ key: 'lock:held', pid: process.pid, mode: 'exclusive', fencingToken: 1 });

      await backend.release(lease);
      // The release writes its token as released; the record stays but no longer names a holder.
      expect(readFileSync(files.anchorPath, 'utf8').slice(0, 42)).toBe(`${digits(1)} - ${digits(1)}\n`);
    } finally {
      await backend.close();
    }
  });

  it("byte 20 says 'S' once a reader may have left a record file, '-' again once a writer swept them", async () => {
    const backend = new FileLockBackend({ dir: kit.tempDir() });
    try {
      const files = keyFiles(await backend.directory(), 'lock:flag');
      const flag = (): string => readFileSync(files.anchorPath, 'latin1').slice(20, 21);
      const reader = request('lock:flag', 'shared');
      await backend.tryAcquire(reader);
      expect(flag()).toBe('S');
      await backend.release(reader);
      const writer = request('lock:flag');
      await backend.tryAcquire(writer);
      expect(flag()).toBe('-');
      await backend.release(writer);
    } finally {
      await backend.close();
    }
  });
});
