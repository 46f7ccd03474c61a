import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LockNotSupportedError, LockOptionsError } from '../../lock.errors';
import { ExclusiveCreateMechanism } from './exclusive-create.mechanism';
import type { FileLockMechanism } from './file-backend-options.interface';
import { createExclusively } from './atomic-files';
import { KernelLockMechanism } from './kernel-lock.mechanism';
import type { LockMechanism } from './lock-mechanism';
import { loadNativeFileLock, UNSUPPORTED_LOCK_ERRORS, type NativeFileLock } from './native-file-lock';

/** Records which mechanism a directory is used with, so processes never mix two that do not exclude each other. */
const MECHANISM_MARKER = '.mechanism';
/**
 * The marker's text: the mechanism and, since lock files keep the exclusive holder's record
 * (format 2), the kernel layout's format. Versions before that wrote a bare `kernel` and read
 * back anything else as another mechanism, so old and new processes refuse each other's directories.
 */
const MARKER_TEXT: Record<LockMechanism['kind'], string> = { kernel: 'kernel 2', 'exclusive-create': 'exclusive-create' };
const PROBE_FILE = '.probe.lock';

export interface ChosenMechanism {
  mechanism: LockMechanism;
  /** Why the degraded mode was chosen; `undefined` for kernel locks. */
  degradedBecause?: string;
}

/** One probe per directory and process: the answer cannot change while the filesystem stays mounted. */
const probes = new Map<string, Promise<string | null>>();

export async function chooseMechanism(dir: string, wanted: FileLockMechanism): Promise<ChosenMechanism> {
  const chosen = await pick(dir, wanted);
  await agreeOnMechanism(dir, chosen.mechanism.kind, chosen.degradedBecause);
  return chosen;
}

async function pick(dir: string, wanted: FileLockMechanism): Promise<ChosenMechanism> {
  if (wanted === 'exclusive-create') {
    return { mechanism: new ExclusiveCreateMechanism(), degradedBecause: "forced by the file backend's `mechanism` option" };
  }
  const loaded = loadNativeFileLock();
  let unsupported: string;
  if ('error' in loaded) {
    unsupported = `the native addon fs-native-extensions could not be loaded (${loaded.error.message.split('\n')[0]})`;
  } else {
    let probed = probes.get(dir);
    if (!probed) probes.set(dir, (probed = probe(dir, loaded.native)));
    const code = await probed;
    if (code === null) return { mechanism: new KernelLockMechanism(loaded.native) };
    unsupported = `the filesystem of ${dir} refuses OS file locks (${code})`;
  }
  if (wanted === 'kernel') throw new LockNotSupportedError(`File backend: mechanism 'kernel' is unavailable: ${unsupported}`);
  return { mechanism: new ExclusiveCreateMechanism(), degradedBecause: unsupported };
}

/** `null` when the directory holds OS locks, else the error code that says it cannot. */
async function probe(dir: string, native: NativeFileLock): Promise<string | null> {
  const handle = await open(join(dir, PROBE_FILE), constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    // Shared: concurrent probes of other processes never conflict with it.
    native.tryLock(handle.fd, { shared: true });
    native.unlock(handle.fd);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code && UNSUPPORTED_LOCK_ERRORS.has(code)) return code;
    throw error;
  } finally {
    await handle.close();
  }
}

async function agreeOnMechanism(dir: string, kind: LockMechanism['kind'], degradedBecause?: string): Promise<void> {
  if (await createExclusively(dir, MECHANISM_MARKER, MARKER_TEXT[kind])) return;
  const marker = join(dir, MECHANISM_MARKER);
  const recorded = (await readFile(marker, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW })).trim();
  if (recorded === MARKER_TEXT[kind]) return;
  const [recordedKind, recordedFormat = '1'] = recorded.split(' ');
  if (recordedKind === kind) {
    throw new LockOptionsError(
      `File backend: ${dir} holds '${kind}' locks in format ${recordedFormat} (another version of nestjs-lock), ` +
        `this version writes ${MARKER_TEXT[kind].split(' ')[1] ?? '1'}; processes on different formats would not see each other's ` +
        `holders. Run one version per directory: use another dir, or stop every process using it and empty it.`,
    );
  }
  throw new LockOptionsError(
    `File backend: ${dir} is used with the '${recordedKind}' mechanism, but this process would use '${kind}'` +
      (degradedBecause ? ` (${degradedBecause})` : '') +
      '. The two do not exclude each other; use another dir, or make every process use the same mechanism ' +
      `(delete ${marker} only when no process uses the directory).`,
  );
}
