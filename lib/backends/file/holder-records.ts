import { constants } from 'node:fs';
import { link, lstat, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { LockRecord } from '../../lock-backend.interface';
import { LockBackendError } from '../../lock.errors';
import { isHoldersDir, isLockFile, parseRecordName, recordName, TEMP_NAME, tempName } from './lock-file-names';

export const HOSTNAME = hostname();

/**
 * What a record file holds: one grant of one holder. No expiry is stored (kernel locks have
 * none) and staleness is judged when read, so both stay out of the file.
 */
export type StoredRecord = Omit<LockRecord, 'expiresInMs' | 'stale'> & { v: 1; grantId: string };

export interface FoundRecord {
  record: StoredRecord;
  /** The record file, or the lock file for an exclusive holder's record kept in the lock. */
  path: string;
  /** Last write or heartbeat touch (epoch ms). */
  mtimeMs: number;
}

/** The fields of a record that stay the same between grants of one key to one owner. */
type FixedFields = Pick<StoredRecord, 'v' | 'key' | 'ownerId' | 'instanceId' | 'hostname' | 'pid' | 'mode' | 'ttlMs'>;
/** Per key, those fields and their JSON (without the closing brace), built once. */
const fixedJson = new Map<string, { fields: FixedFields; json: string }>();
const MAX_FIXED_JSON = 10_000;

const WRITE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

/**
 * Write `data` to `dir/name` so readers see the old file or the whole new one, never a torn
 * one: a fresh temp file (O_EXCL, O_NOFOLLOW, 0600) renamed over the target. `rename` replaces
 * a planted symlink itself rather than following it.
 */
export async function writeAtomically(dir: string, name: string, data: string): Promise<void> {
  const temp = join(dir, tempName());
  try {
    await writeFile(temp, data, { flag: WRITE_NEW, mode: 0o600 });
    await rename(temp, join(dir, name));
  } catch (error) {
    await removeQuietly(temp);
    throw error;
  }
}

/** Create `dir/name` with `content`, complete, or not at all if the name exists. */
export async function createExclusively(dir: string, name: string, content: string): Promise<boolean> {
  const temp = join(dir, tempName());
  try {
    await writeFile(temp, content, { flag: WRITE_NEW, mode: 0o600 });
    await link(temp, join(dir, name));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await removeQuietly(temp);
  }
}

/**
 * A record as one line of JSON: the stored fields only (whatever else the object carries stays
 * out). Every grant writes one, so the part that does not change between grants of a key is
 * serialised once: a full `JSON.stringify` was ~1 µs of a ~18 µs file-lock cycle.
 */
export function serializeRecord(record: StoredRecord): string {
  let fixed = fixedJson.get(record.key);
  const same = fixed?.fields;
  if (
    !fixed ||
    same?.ownerId !== record.ownerId ||
    same.instanceId !== record.instanceId ||
    same.hostname !== record.hostname ||
    same.pid !== record.pid ||
    same.mode !== record.mode ||
    same.ttlMs !== record.ttlMs
  ) {
    const { v, key, ownerId, instanceId, hostname, pid, mode, ttlMs } = record;
    const current: FixedFields = { v, key, ownerId, instanceId, hostname, pid, mode, ttlMs };
    if (fixedJson.size >= MAX_FIXED_JSON) fixedJson.clear();
    fixedJson.set(key, (fixed = { fields: current, json: JSON.stringify(current).slice(0, -1) }));
  }
  // grantId is 16 hex digits (newGrantId), the other two are numbers: nothing to escape.
  return `${fixed.json},"grantId":"${record.grantId}","acquiredAt":${record.acquiredAt},"fencingToken":${record.fencingToken}}`;
}

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

export function parseRecord(text: string): StoredRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const r = value as Partial<StoredRecord>;
  const valid =
    r.v === 1 &&
    typeof r.key === 'string' &&
    typeof r.grantId === 'string' &&
    typeof r.ownerId === 'string' &&
    typeof r.instanceId === 'string' &&
    typeof r.hostname === 'string' &&
    Number.isInteger(r.pid) &&
    (r.mode === 'shared' || r.mode === 'exclusive') &&
    typeof r.acquiredAt === 'number' &&
    typeof r.ttlMs === 'number' &&
    typeof r.fencingToken === 'number';
  return valid ? (r as StoredRecord) : null;
}

export async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

/** `true` unless the pid provably does not exist on this host (EPERM means alive, not ours). */
export function isPidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why a record looks stale from the outside (without holding the lock), or `null`. */
export function deadHolderReason(record: StoredRecord): string | null {
  if (record.hostname !== HOSTNAME || isPidAlive(record.pid)) return null;
  return `holder pid ${record.pid} on ${record.hostname} is no longer running`;
}

export function toLockRecord(found: FoundRecord, expiresInMs: number | null, stale?: string | null): LockRecord {
  const { record } = found;
  return {
    key: record.key,
    ownerId: record.ownerId,
    instanceId: record.instanceId,
    hostname: record.hostname,
    pid: record.pid,
    mode: record.mode,
    acquiredAt: record.acquiredAt,
    expiresInMs,
    fencingToken: record.fencingToken,
    ttlMs: record.ttlMs,
    ...(stale ? { stale } : {}),
  };
}
