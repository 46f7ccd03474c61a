import { constants } from 'node:fs';
import { lstat, mkdir, readdir, readFile, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { LockBackendError } from '../../lock.errors';
import type { LockMode } from '../../lock-backend.interface';
import { createExclusively, removeQuietly, writeAtomically } from './atomic-files';
import type { StoredRecord } from './holder-record-format';
import { isPidAlive } from './pid-liveness';
import { TEMP_NAME, type KeyFiles } from './lock-file-names';
import type { Claim, ClaimAttempt, LockMechanism } from './lock-mechanism';

/** Who holds a generation, as its claim file stores it. */
interface ClaimIdentity {
  grantId: string;
  ownerId: string;
  hostname: string;
  pid: number;
  ttlMs: number;
}

/** Claim files `g<generation>`, release markers `r<generation>`. */
const GENERATION = /^([gr])(\d{1,15})$/;

/**
 * The degraded mode, for filesystems without kernel locks. Each key has a directory of
 * generations: holding generation G means having created `gG` with an exclusive create
 * (`link`, which fails if the name exists), and G is the fencing token. The lock is free when
 * the newest generation has a release marker `rG`, or when `gG`, refreshed by the heartbeat,
 * is older than its TTL. Taking over is claiming G+1 the same way: no file is ever checked and
 * then deleted, so two contenders can never both win. Nothing here notices a crash: a dead
 * holder blocks the key until its TTL runs out.
 */
export class ExclusiveCreateMechanism implements LockMechanism {
  readonly kind = 'exclusive-create';
  /** Holder records stay in record files: a claim file outlives its release (until the next holder cleans up). */
  readonly keepsExclusiveRecord = false;

  // The mode is not needed: between processes every claim here is exclusive (a shared request
  // still shares inside the process, through the process lock table).
  async claim(files: KeyFiles, _mode: LockMode, record: StoredRecord, force = false): Promise<ClaimAttempt> {
    const dir = files.anchorPath;
    const identity = identityOf(record);
    await ensureClaimDir(dir);
    const { top, released } = await scan(dir);
    let tookOver: string | undefined;
    if (top > 0 && !released) {
      const current = await readClaim(join(dir, `g${top}`));
      // Gone between scan and read: a newer holder cleaned up; it holds the lock now.
      if (!current) return { claim: null, retryAfterMs: null };
      const ageMs = Date.now() - current.mtimeMs;
      if (!force && ageMs < current.identity.ttlMs) {
        return { claim: null, retryAfterMs: Math.max(1, Math.ceil(current.identity.ttlMs - ageMs)) };
      }
      const who = `pid ${current.identity.pid} on ${current.identity.hostname}`;
      tookOver = force
        ? `reaped by an operator from ${who}`
        : `claim of ${who} not refreshed for ${Math.round(ageMs)} ms (ttl ${current.identity.ttlMs} ms)`;
    }
    const generation = top + 1;
    if (!(await createExclusively(dir, `g${generation}`, JSON.stringify(identity)))) {
      return { claim: null, retryAfterMs: null };
    }
    // A contender that scanned long ago may have re-created a generation that a holder had
    // already cleaned up; a newer generation means that contender lost, whoever it is.
    if ((await scan(dir)).top > generation) {
      await removeQuietly(join(dir, `g${generation}`));
      return { claim: null, retryAfterMs: null };
    }
    await cleanUp(dir, generation);
    record.fencingToken = generation;
    return { claim: new ExclusiveCreateClaim(dir, generation, identity), tookOver, scanRecords: true };
  }

  lockRecord(): null {
    return null; // see keepsExclusiveRecord
  }

  close(): void {
    // Nothing is kept open between calls.
  }
}

class ExclusiveCreateClaim implements Claim {
  private refreshedAt = Date.now();
  private released = false;

  constructor(
    private readonly dir: string,
    public fencingToken: number,
    private identity: ClaimIdentity,
  ) {}

  async renew(record: StoredRecord): Promise<number | null> {
    const identity = identityOf(record);
    if (this.released || !(await this.refresh(identity.ttlMs))) return null;
    const next = this.fencingToken + 1;
    if (!(await createExclusively(this.dir, `g${next}`, JSON.stringify(identity)))) return null;
    this.fencingToken = next;
    this.identity = identity;
    this.refreshedAt = Date.now();
    await cleanUp(this.dir, next);
    record.fencingToken = next;
    return next;
  }

  async refresh(ttlMs: number): Promise<boolean> {
    if (this.released) return false;
    const own = join(this.dir, `g${this.fencingToken}`);
    try {
      // Past its TTL the claim is up for grabs: a contender may have judged it expired already
      // and be creating the next generation, so touching it now would leave two holders.
      if (Date.now() - (await stat(own)).mtimeMs >= this.identity.ttlMs) return false;
      if (ttlMs !== this.identity.ttlMs) {
        // Checked first: rewriting a claim a newer holder already cleaned up would resurrect it.
        if (await this.superseded()) return false;
        this.identity = { ...this.identity, ttlMs };
        await writeAtomically(this.dir, `g${this.fencingToken}`, JSON.stringify(this.identity));
      } else {
        const now = new Date();
        await utimes(own, now, now);
      }
    } catch {
      return false; // cleaned up by the holder that took over
    }
    this.refreshedAt = Date.now();
    return !(await this.superseded());
  }

  async release(): Promise<boolean> {
    if (this.released) return false;
    this.released = true;
    if (await this.superseded()) return false;
    await createExclusively(this.dir, `r${this.fencingToken}`, '');
    // The directory sits in the watched lock directory: touching it is the waiters' wake-up.
    const now = new Date();
    await utimes(this.dir, now, now).catch(() => undefined);
    return true;
  }

  /** A newer generation exists (not only `g<N+1>`: that one may already be cleaned up). */
  private async superseded(): Promise<boolean> {
    return (await scan(this.dir)).top > this.fencingToken;
  }

  expiresInMs(): number {
    return Math.max(0, this.identity.ttlMs - (Date.now() - this.refreshedAt));
  }
}

async function ensureClaimDir(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const info = await lstat(dir);
  if (!info.isDirectory()) {
    throw new LockBackendError(
      'file',
      `${dir} is not a claim directory (a symlink, or a lock file of the kernel mechanism?); refusing to use it`,
    );
  }
}

async function scan(dir: string): Promise<{ top: number; released: boolean }> {
  const generations = new Map<number, { claimed: boolean; released: boolean }>();
  for (const name of await readdir(dir)) {
    const match = GENERATION.exec(name);
    if (!match) continue;
    const generation = Number(match[2]);
    const entry = generations.get(generation) ?? { claimed: false, released: false };
    if (match[1] === 'g') entry.claimed = true;
    else entry.released = true;
    generations.set(generation, entry);
  }
  let top = 0;
  for (const [generation, entry] of generations) if (entry.claimed && generation > top) top = generation;
  return { top, released: generations.get(top)?.released ?? false };
}

async function readClaim(path: string): Promise<{ identity: ClaimIdentity; mtimeMs: number } | null> {
  try {
    const [text, info] = await Promise.all([readFile(path, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW }), stat(path)]);
    const identity = JSON.parse(text) as ClaimIdentity;
    if (typeof identity.ttlMs !== 'number' || typeof identity.pid !== 'number') return null;
    return { identity, mtimeMs: info.mtimeMs };
  } catch {
    return null;
  }
}

/** The holder of `generation` drops older generations and temp files of dead writers. */
async function cleanUp(dir: string, generation: number): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(
    names.map(async (name) => {
      const match = GENERATION.exec(name);
      const temp = TEMP_NAME.exec(name);
      if ((match && Number(match[2]) < generation) || (temp && !isPidAlive(Number(temp[1])))) {
        await removeQuietly(join(dir, name));
      }
    }),
  );
}

function identityOf(record: StoredRecord): ClaimIdentity {
  return { grantId: record.grantId, ownerId: record.ownerId, hostname: record.hostname, pid: record.pid, ttlMs: record.ttlMs };
}
