import { constants } from 'node:fs';
import { link, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempName } from './lock-file-names';

const WRITE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

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

export async function removeQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}
