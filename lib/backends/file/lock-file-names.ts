import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** Longest readable part kept from a key; the hash carries the identity. */
const READABLE_CHARS = 40;
/** Holder records of one key: `<base>.holders/<16 hex grant id>.info`. Bases never contain a dot. */
const HOLDERS_DIR = /^([A-Za-z0-9_-]+)\.holders$/;
const LOCK_FILE = /^[A-Za-z0-9_-]+\.lock$/;
const RECORD_NAME = /^([0-9a-f]{16})\.info$/;
/** Temporary files start with a dot, which no base does, and carry the writer's pid for the sweep. */
export const TEMP_NAME = /^\.tmp-(\d+)-[0-9a-f]+$/;

/** The file names of one key inside the lock directory. */
export interface KeyFiles {
  key: string;
  /** Readable, sanitised prefix plus a hash of the exact key. */
  base: string;
  /** The lock itself: a file (kernel mechanism) or a directory of claims (exclusive-create). */
  anchor: string;
  anchorPath: string;
  /** Directory of the key's holder records, so finding them never lists the whole lock directory. */
  holdersPath: string;
}

/**
 * Map a key to names that cannot leave the directory: everything outside `[A-Za-z0-9_-]`
 * (dots, slashes, NUL, any non-ASCII) becomes `_` in the readable part, which is cut short, and
 * the hash of the key's UTF-16 code units makes distinct keys distinct files. Hashing code units
 * (not UTF-8) keeps even lone surrogates apart; Unicode normalisation variants (`é` as one code
 * point or as `e` + accent) are distinct keys here, as they are for the Redis and memory backends.
 */
export function keyFiles(dir: string, key: string): KeyFiles {
  const readable = key.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, READABLE_CHARS) || '_';
  const hash = createHash('sha256').update(key, 'utf16le').digest('hex').slice(0, 32);
  const base = `${readable}-${hash}`;
  const anchor = `${base}.lock`;
  return { key, base, anchor, anchorPath: join(dir, anchor), holdersPath: join(dir, `${base}.holders`) };
}

/** Random per process: grant ids only need to differ between the holders of one key. */
const GRANT_PREFIX = randomBytes(4).toString('hex');
let grants = 0;

/** 16 hex digits, unique per process for 2^32 grants; a counter, not a random draw per grant (which cost a cycle 2 µs). */
export function newGrantId(): string {
  grants = (grants + 1) >>> 0;
  return GRANT_PREFIX + grants.toString(16).padStart(8, '0');
}

export function recordName(grantId: string): string {
  return `${grantId}.info`;
}

/** The grant id of a record file name, `null` for anything else. */
export function parseRecordName(name: string): string | null {
  return RECORD_NAME.exec(name)?.[1] ?? null;
}

export function isHoldersDir(name: string): boolean {
  return HOLDERS_DIR.test(name);
}

export function isLockFile(name: string): boolean {
  return LOCK_FILE.test(name);
}

export function tempName(): string {
  return `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}
