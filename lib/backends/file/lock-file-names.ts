import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';

/** Longest readable part kept from a key; the hash carries the identity. */
const READABLE_CHARS = 40;
/** Record files: `<base>.<16 hex grant id>.info`. Bases never contain a dot. */
const RECORD_NAME = /^([A-Za-z0-9_-]+)\.([0-9a-f]{16})\.info$/;
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
  return { key, base, anchor, anchorPath: join(dir, anchor) };
}

export function newGrantId(): string {
  return randomBytes(8).toString('hex');
}

export function recordName(base: string, grantId: string): string {
  return `${base}.${grantId}.info`;
}

/** `{ base, grantId }` for a record file name, `null` for anything else. */
export function parseRecordName(name: string): { base: string; grantId: string } | null {
  const match = RECORD_NAME.exec(name);
  return match ? { base: match[1], grantId: match[2] } : null;
}

export function tempName(): string {
  return `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}
