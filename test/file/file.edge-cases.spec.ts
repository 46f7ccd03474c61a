import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExclusiveCreateMechanism } from '../../lib/backends/file/exclusive-create.mechanism';
import { FileLockBackend } from '../../lib/backends/file/file-lock.backend';
import { keyFiles } from '../../lib/backends/file/lock-file-names';
import { newRecord } from '../../lib/backends/file/stale-holders';
import type { StoredRecord } from '../../lib/backends/file/holder-record-format';

function record(key: string, ttlMs: number, pid: number): StoredRecord {
  const r = newRecord({
    key,
    token: `t-${pid}`,
    ttlMs,
    mode: 'exclusive',
    owner: { ownerId: `o-${pid}`, instanceId: `i-${pid}`, hostname: 'h', pid },
  });
  return r;
}

// The module object itself (a namespace import is a frozen copy), as the backend's compiled code calls it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fsp = require('node:fs/promises') as typeof import('node:fs/promises');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('file backend edge cases', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'file-edge-'));
  });
  afterEach(() => {
    jest.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  it('exclusive-create: a heartbeat arriving after the claim expired must not keep the lock while a contender takes it over', async () => {
    const files = keyFiles(dir, 'k');
    const a = new ExclusiveCreateMechanism();
    const c = new ExclusiveCreateMechanism();
    const first = await a.claim(files, 'exclusive', record('k', 100, 1));
    expect(first.claim).not.toBeNull();
    await sleep(200); // A's lease ran out (its heartbeat is late)

    // Contender C reads A's expired claim; A's late heartbeat lands right after that read.
    const realStat = fsp.stat;
    let aRefreshed: boolean | undefined;
    jest.spyOn(fsp, 'stat').mockImplementation((async (...args: Parameters<typeof fsp.stat>) => {
      const info = await realStat(...args);
      if (aRefreshed === undefined && String(args[0]).endsWith(`${join(files.anchor, 'g1')}`)) {
        aRefreshed = false;
        jest.restoreAllMocks();
        aRefreshed = await first.claim!.refresh(100);
      }
      return info;
    }) as typeof fsp.stat);
    const second = await c.claim(files, 'exclusive', record('k', 100, 2));

    // Never both: either A's heartbeat fails, or C is refused.
    expect(aRefreshed !== undefined).toBe(true);
    expect(aRefreshed && second.claim !== null).toBe(false);
  });

  it('exclusive-create: refreshing a claim whose TTL already ran out reports it lost', async () => {
    const files = keyFiles(dir, 'k2');
    const a = new ExclusiveCreateMechanism();
    const first = await a.claim(files, 'exclusive', record('k2', 100, 1));
    await sleep(200);
    // Any contender may already be taking it over (it decided on the same expired mtime).
    expect(await first.claim!.refresh(100)).toBe(false);
  });

  it('exclusive-create: a shared request of this process does not join a claim another process already took over', async () => {
    const backend = new FileLockBackend({ dir, mechanism: 'exclusive-create' });
    try {
      const owner = { ownerId: 'p', instanceId: 'i', hostname: 'h', pid: process.pid };
      const first = await backend.tryAcquire({ key: 'k3', token: 'reader-1', ttlMs: 150, mode: 'shared', owner });
      expect(first.acquired).toBe(true);
      await sleep(300); // reader-1's heartbeat is late: its claim expired
      // Another process (a bare mechanism here: it bypasses this process's lock table) takes the key over.
      const other = await new ExclusiveCreateMechanism().claim(keyFiles(await backend.directory(), 'k3'), 'exclusive', record('k3', 60_000, 2));
      expect(other.claim).not.toBeNull();
      // A new reader here must not be let in beside that writer (with an older fencing token).
      const second = await backend.tryAcquire({ key: 'k3', token: 'reader-2', ttlMs: 150, mode: 'shared', owner });
      expect(second.acquired).toBe(false);
    } finally {
      await backend.close();
    }
  });

  it('no directory watch is left open by a waitForRelease that comes after close()', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    const realWatch = fs.watch;
    const open = new Set<import('node:fs').FSWatcher>();
    jest.spyOn(fs, 'watch').mockImplementation(((...args: Parameters<typeof fs.watch>) => {
      const watcher = (realWatch as (...a: unknown[]) => import('node:fs').FSWatcher)(...args);
      open.add(watcher);
      const close = watcher.close.bind(watcher);
      watcher.close = () => {
        open.delete(watcher);
        close();
      };
      return watcher;
    }) as typeof fs.watch);
    const backend = new FileLockBackend({ dir });
    const controller = new AbortController();
    await backend.waitForRelease('k4', 50, controller.signal); // starts the watch
    await backend.close();
    expect(open.size).toBe(0);
    // A waiter that was woken by close() and retries (or any late caller) must not re-open it.
    await backend.waitForRelease('k4', 50, controller.signal);
    const leaked = open.size;
    for (const watcher of [...open]) watcher.close();
    expect(leaked).toBe(0);
  });
});
