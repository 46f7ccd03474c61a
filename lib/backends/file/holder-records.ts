import { constants } from 'node:fs';
import { lstat, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LockBackendError } from '../../lock.errors';
import { removeQuietly, writeAtomically } from './atomic-files';
import { parseRecord, serializeRecord, type FoundRecord, type StoredRecord } from './holder-record-format';
import { isHoldersDir, isLockFile, parseRecordName, recordName, TEMP_NAME } from './lock-file-names';
import { isPidAlive } from './pid-liveness';

/**
 * The records directory of a key: one file per holder (format in `holder-record-format.ts`),
 * written atomically, read back oldest first; and the sweep of temp files dead writers left.
 */

const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

/** Write a holder record into `holdersPath`, creating that directory (0700) on first use. */
export async function writeRecord(holdersPath: string, record: StoredRecord): Promise<string> {
  const name = recordName(record.grantId);
  // Checked before every write: a symlink planted as the directory would redirect the record.
  try {
    await assertRealDirectory(holdersPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await mkdir(holdersPath, { mode: 0o700 }).catch((mkdirError: NodeJS.ErrnoException) => {
      if (mkdirError.code !== 'EEXIST') throw mkdirError;
    });
    await assertRealDirectory(holdersPath);
  }
  await writeAtomically(holdersPath, name, serializeRecord(record));
  return join(holdersPath, name);
}

/**
 * The records of one key, oldest first; unreadable ones are skipped. A symlink planted as the
 * records directory is refused: we would otherwise read, and remove, files elsewhere.
 */
export async function readRecords(holdersPath: string): Promise<FoundRecord[]> {
  let names: string[];
  try {
    await assertRealDirectory(holdersPath);
    names = await readdir(holdersPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const found: FoundRecord[] = [];
  for (const name of names) {
    const grantId = parseRecordName(name);
    if (!grantId) continue;
    const record = await readRecordFile(join(holdersPath, name));
    if (record && record.record.grantId === grantId) found.push(record);
  }
  return found.sort((a, b) => a.record.acquiredAt - b.record.acquiredAt);
}

/**
 * Records of every key in `dir` (operator calls and the start-up sweep only): record files, and
 * the exclusive holders' records that `lockRecord` reads from lock files.
 */
export async function readAllRecords(dir: string, lockRecord: (anchorPath: string) => FoundRecord | null): Promise<FoundRecord[]> {
  const found: FoundRecord[] = [];
  for (const name of await readdir(dir)) {
    if (isHoldersDir(name)) found.push(...(await readRecords(join(dir, name)).catch(() => [])));
    else if (isLockFile(name)) found.push(...[lockRecord(join(dir, name))].filter((entry) => entry !== null));
  }
  return found.sort((a, b) => a.record.acquiredAt - b.record.acquiredAt);
}

/** Temp files left in `dir` and its records directories by writers that died. */
export async function removeDeadTempFiles(dir: string): Promise<void> {
  const folders = [dir, ...(await readdir(dir)).filter(isHoldersDir).map((name) => join(dir, name))];
  for (const folder of folders) {
    for (const name of await readdir(folder).catch(() => [] as string[])) {
      const temp = TEMP_NAME.exec(name);
      if (temp && !isPidAlive(Number(temp[1]))) await removeQuietly(join(folder, name));
    }
  }
}

async function assertRealDirectory(path: string): Promise<void> {
  const info = await lstat(path);
  if (!info.isDirectory()) {
    throw new LockBackendError('file', `${path} is not a directory (a planted symlink?); refusing to use it`);
  }
}

async function readRecordFile(path: string): Promise<FoundRecord | null> {
  try {
    const [text, info] = await Promise.all([readFile(path, { encoding: 'utf8', flag: READ_NO_FOLLOW }), stat(path)]);
    const record = parseRecord(text);
    return record ? { record, path, mtimeMs: info.mtimeMs } : null;
  } catch {
    // Removed between readdir and read (a release), a symlink, or not ours to read.
    return null;
  }
}
