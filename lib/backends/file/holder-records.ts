import { constants } from 'node:fs';
import { link, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { LockMode, LockRecord } from '../../lock-backend.interface';
import { parseRecordName, recordName, tempName } from './lock-file-names';

export const HOSTNAME = hostname();

/** What a record file holds: one grant of one holder. */
export interface StoredRecord {
  v: 1;
  key: string;
  grantId: string;
  ownerId: string;
  instanceId: string;
  hostname: string;
  pid: number;
  mode: LockMode;
  acquiredAt: number;
  ttlMs: number;
  fencingToken: number;
}

export interface FoundRecord {
  record: StoredRecord;
  path: string;
  /** Last write or heartbeat touch (epoch ms). */
  mtimeMs: number;
}

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

export async function writeRecord(dir: string, base: string, record: StoredRecord): Promise<string> {
  const name = recordName(base, record.grantId);
  await writeAtomically(dir, name, JSON.stringify(record));
  return join(dir, name);
}

/** Every readable record in `dir`, optionally only those of one key base. Unreadable ones are skipped. */
export async function readRecords(dir: string, base?: string): Promise<FoundRecord[]> {
  const found: FoundRecord[] = [];
  for (const name of await readdir(dir)) {
    const parsed = parseRecordName(name);
    if (!parsed || (base !== undefined && parsed.base !== base)) continue;
    const record = await readRecordFile(join(dir, name));
    if (record && record.record.grantId === parsed.grantId) found.push(record);
  }
  return found.sort((a, b) => a.record.acquiredAt - b.record.acquiredAt);
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

function parseRecord(text: string): StoredRecord | null {
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
