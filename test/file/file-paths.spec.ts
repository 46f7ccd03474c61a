import { linkSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { FileLockBackend, LockBackendError, type LockRequest } from '../../lib';
import { KernelLockMechanism } from '../../lib/backends/file/kernel-lock.mechanism';
import { keyFiles } from '../../lib/backends/file/lock-file-names';
import { loadNativeFileLock } from '../../lib/backends/file/native-file-lock';
import { Kit } from './file-test-kit';

const owner = { ownerId: 'paths-test', instanceId: 'paths', hostname: hostname(), pid: process.pid };
let tokens = 0;
function request(key: string, mode: LockRequest['mode'] = 'exclusive'): LockRequest {
  return { key, token: `t${++tokens}`, ttlMs: 10_000, mode, owner };
}

/** Keys straight into the backend: it must be safe on its own, whatever the core lets through. */
describe('file backend: keys cannot escape the lock directory', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  const hostile = [
    '../x',
    '../../etc/passwd',
    'a/b',
    '/absolute',
    '.',
    '..',
    'nul\0byte',
    '\\..\\windows',
    'x'.repeat(10_000),
    'é'.repeat(300),
    '',
  ];

  it.each(hostile.map((key) => [JSON.stringify(key.length > 40 ? `${key.slice(0, 20)}…(${key.length})` : key), key]))(
    'key %s stays a plain file inside dir',
    async (_label, key) => {
      const parent = kit.tempDir();
      const dir = join(parent, 'locks');
      const backend = new FileLockBackend({ dir });
      try {
        const lease = request(key);
        expect(await backend.tryAcquire(lease)).toEqual({ acquired: true, fencingToken: 1 });
        // Nothing appeared next to the lock directory, and everything in it is a plain name.
        expect(readdirSync(parent)).toEqual(['locks']);
        const names = readdirSync(dir);
        for (const name of names) {
          expect(name).not.toMatch(/[/\\\0]/);
          expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
        }
        const files = keyFiles(await backend.directory(), key);
        expect(dirname(files.anchorPath)).toBe(await backend.directory());
        expect(names).toContain(files.anchor);
        expect(files.anchor.startsWith('.')).toBe(false);
        expect((await backend.inspect(key)).map((record) => record.key)).toEqual([key]);
        expect(await backend.release(lease)).toBe('released');
      } finally {
        await backend.close();
      }
    },
  );

  it('keeps distinct keys distinct: Unicode normalisation variants, case, and keys sanitising alike', async () => {
    const dir = kit.tempDir();
    const backend = new FileLockBackend({ dir });
    try {
      const keys = ['caf\u00e9', 'cafe\u0301', 'CAFÉ', 'a/b', 'a_b', 'a.b', 'a?b', '\ud800', '\udbff'];
      const anchors = new Set(keys.map((key) => keyFiles(dir, key).anchor));
      expect(anchors.size).toBe(keys.length);
      for (const key of keys) expect((await backend.tryAcquire(request(key))).acquired).toBe(true);
    } finally {
      await backend.close();
    }
  });

  it('refuses a planted symlink or hard link instead of locking or writing through it', async () => {
    const parent = kit.tempDir();
    const dir = join(parent, 'locks');
    mkdirSync(dir, { mode: 0o700 });
    const victim = join(parent, 'precious.txt');
    writeFileSync(victim, 'do not touch');
    symlinkSync(victim, keyFiles(dir, 'linked').anchorPath);
    linkSync(victim, keyFiles(dir, 'hard').anchorPath);
    const backend = new FileLockBackend({ dir });
    try {
      await expect(backend.tryAcquire(request('linked'))).rejects.toThrow(/symbolic link/);
      await expect(backend.tryAcquire(request('hard'))).rejects.toThrow(LockBackendError);
      expect(readFileSync(victim, 'utf8')).toBe('do not touch');
      // A planted symlink on a dangling target is refused too, and nothing gets created there.
      symlinkSync(join(parent, 'created-by-us'), keyFiles(dir, 'dangling').anchorPath);
      await expect(backend.tryAcquire(request('dangling'))).rejects.toThrow(/symbolic link/);
      expect(readdirSync(parent).sort()).toEqual(['locks', 'precious.txt']);

      // A directory symlink planted where a key's holder record files go (shared holders have
      // one each): no record is written through it.
      const elsewhere = join(parent, 'elsewhere');
      mkdirSync(elsewhere);
      symlinkSync(elsewhere, keyFiles(dir, 'records').holdersPath);
      await expect(backend.tryAcquire(request('records', 'shared'))).rejects.toThrow(/not a directory/);
      expect(readdirSync(elsewhere)).toEqual([]);
      // The failed attempt gave the kernel lock back.
      const loaded = loadNativeFileLock();
      if (!('native' in loaded)) throw loaded.error;
      const mechanism = new KernelLockMechanism(loaded.native);
      const probe = mechanism.claim(keyFiles(dir, 'records'), 'exclusive', {
        v: 1,
        grantId: '0'.repeat(16),
        key: 'records',
        ownerId: 'probe',
        instanceId: 'probe',
        hostname: hostname(),
        pid: process.pid,
        mode: 'exclusive',
        acquiredAt: Date.now(),
        ttlMs: 1_000,
        fencingToken: 0,
      });
      expect(probe.claim).not.toBeNull();
      probe.claim?.release();
      mechanism.close();
    } finally {
      await backend.close();
    }
  });

  it('creates the directory 0700 and lock and record files 0600', async () => {
    const dir = join(kit.tempDir(), 'nested', 'locks');
    const backend = new FileLockBackend({ dir });
    try {
      // An exclusive holder's record lives in the lock file; a shared holder gets a record file.
      await backend.tryAcquire(request('modes'));
      await backend.tryAcquire(request('shared-modes', 'shared'));
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      const real = await backend.directory();
      const [exclusive, shared] = [keyFiles(real, 'modes'), keyFiles(real, 'shared-modes')];
      expect(readdirSync(dir).filter((name) => !name.startsWith('.')).sort()).toEqual(
        [exclusive.anchor, basename(shared.holdersPath), shared.anchor].sort(),
      );
      expect(statSync(shared.holdersPath).mode & 0o777).toBe(0o700);
      const records = readdirSync(shared.holdersPath).map((name) => join(shared.holdersPath, name));
      expect(records).toHaveLength(1);
      const dotFiles = readdirSync(dir).filter((name) => name.startsWith('.')).map((name) => join(dir, name));
      for (const path of [...dotFiles, exclusive.anchorPath, shared.anchorPath, ...records]) {
        expect({ path, mode: statSync(path).mode & 0o777 }).toEqual({ path, mode: 0o600 });
      }
    } finally {
      await backend.close();
    }
  });
});
