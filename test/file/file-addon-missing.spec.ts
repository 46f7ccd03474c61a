import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FileLockBackend, LockNotSupportedError } from '../../lib';
import { Kit } from './file-test-kit';

// What an install without the optional dependency (or without a prebuild) looks like.
jest.mock('fs-native-extensions', () => {
  throw new Error('Cannot find module fs-native-extensions (simulated)');
});

describe('file backend without the native addon', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it("degrades under 'auto' and refuses under 'kernel'", async () => {
    const auto = new FileLockBackend({ dir: kit.tempDir() });
    const strict = new FileLockBackend({ dir: kit.tempDir(), mechanism: 'kernel' });
    try {
      expect(await auto.mechanism()).toBe('exclusive-create');
      await expect(strict.init()).rejects.toThrow(LockNotSupportedError);
      await expect(strict.init()).rejects.toThrow(/could not be loaded \(Cannot find module fs-native-extensions \(simulated\)\)/);
    } finally {
      await Promise.all([auto.close(), strict.close()]);
    }
  });

  it('is never loaded by an app that does not start a file backend', () => {
    const script = [
      "require('reflect-metadata');",
      "const lib = require('./lib');",
      "new lib.FileLockBackend({ dir: '/nonexistent/never-started' });",
      "console.log(Object.keys(require.cache).filter((path) => path.includes('fs-native-extensions')).length);",
    ].join('\n');
    const result = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
      cwd: join(__dirname, '..', '..'),
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('0');
  });
});
