import { hostname } from 'node:os';
import { FileLockBackend, type FileStaleRecord } from '../../lib';
import { exited, PROCESS_TEST_TIMEOUT_MS } from '../support/processes';
import { Kit } from './file-test-kit';

// Child processes (ts-node) take seconds to start, tens of seconds on a loaded machine.
jest.setTimeout(PROCESS_TEST_TIMEOUT_MS);

/** What operators see: inspect, forceRelease and the start-up sweep around dead and live holders. */
describe('file backend: inspecting and reaping around real processes', () => {
  const kit = new Kit();
  afterEach(() => kit.cleanup());

  it('answers held-by-live-process for a live holder, cleans up after a dead one, and sweeps at start-up', async () => {
    const dir = kit.tempDir();
    const [first, second] = [kit.start({ dir, key: 'a', action: 'hold' }), kit.start({ dir, key: 'b', action: 'hold', mode: 'shared' })];
    const [heldA] = await Promise.all([first.acquired(), second.acquired()]);
    const seen: FileStaleRecord[] = [];
    const backend = new FileLockBackend({ dir, onStale: (meta) => void seen.push(meta) });
    try {
      expect(await backend.inspect('lock:a')).toEqual([
        expect.objectContaining({ pid: first.pid, hostname: hostname(), mode: 'exclusive', fencingToken: heldA.fencingToken, expiresInMs: null }),
      ]);
      expect(await backend.forceRelease({ key: 'lock:a', reason: 'test' })).toEqual({
        outcome: 'held-by-live-process',
        pid: first.pid,
        hostname: hostname(),
      });
      expect(await backend.forceRelease({ key: 'lock:a', reason: 'test', expectFencingToken: heldA.fencingToken + 7 })).toMatchObject({
        outcome: 'changed-hands',
        current: { pid: first.pid },
      });

      first.child.kill('SIGKILL');
      second.child.kill('SIGKILL');
      await Promise.all([exited(first.child), exited(second.child)]);

      // Seen from outside the lock: dead pids are marked stale, each record reported once.
      const [staleB] = await backend.inspect('lock:b');
      expect(staleB).toMatchObject({ pid: second.pid, mode: 'shared', stale: expect.stringContaining(`pid ${second.pid}`) });
      const listed = await backend.list({ prefix: 'lock:', limit: 10 });
      expect(listed.map((record) => [record.key, Boolean(record.stale)]).sort()).toEqual([
        ['lock:a', true],
        ['lock:b', true],
      ]);
      await backend.inspect('lock:b');
      expect(seen.map((meta) => [meta.key, meta.detectedBy])).toEqual([
        ['lock:b', 'inspect'],
        ['lock:a', 'list'],
      ]);

      // Reaping a dead holder's lock: the kernel lock is free, the leftover record goes.
      expect(await backend.forceRelease({ key: 'lock:a', reason: 'test' })).toMatchObject({
        outcome: 'released',
        previous: { pid: first.pid, fencingToken: heldA.fencingToken },
      });
      expect(await backend.inspect('lock:a')).toEqual([]);
      expect(await backend.forceRelease({ key: 'lock:a', reason: 'test' })).toEqual({ outcome: 'not-held' });

      // A process starting on the directory sweeps the dead shared holder's record.
      const sweptBy: FileStaleRecord[] = [];
      const restarted = new FileLockBackend({ dir, onStale: (meta) => void sweptBy.push(meta) });
      await restarted.init();
      await restarted.close();
      expect(sweptBy).toEqual([expect.objectContaining({ key: 'lock:b', pid: second.pid, detectedBy: 'init' })]);
      expect(await backend.inspect('lock:b')).toEqual([]);
    } finally {
      await backend.close();
    }
  }, PROCESS_TEST_TIMEOUT_MS);
});
