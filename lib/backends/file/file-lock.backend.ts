import { Logger } from '@nestjs/common';
import { mkdir, realpath, stat, utimes } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import type {
  AcquireOutcome,
  ExtendRequest,
  ForceReleaseOutcome,
  ForceReleaseRequest,
  LeaseRef,
  ListOptions,
  LockBackend,
  LockRecord,
  LockRequest,
  ReleaseOutcome,
} from '../../lock-backend.interface';
import { LockOptionsError } from '../../lock.errors';
import { chooseMechanism } from './choose-mechanism';
import type { FileBackendOptions, FileLockMechanism } from './file-backend-options.interface';
import { removeQuietly } from './atomic-files';
import { toLockRecord, type FoundRecord, type StoredRecord } from './holder-record-format';
import { readAllRecords, readRecords, writeRecord } from './holder-records';
import { keyFiles, type KeyFiles } from './lock-file-names';
import { HOSTNAME } from './pid-liveness';
import type { ClaimAttempt, LockMechanism } from './lock-mechanism';
import { processLockTable as table, type HeldFile, type LocalHolder } from './process-lock-table';
import { andThen } from './maybe-async';
import { ReleaseWatcher } from './release-watcher';
import { newRecord, StaleHolders, type Granted } from './stale-holders';

const MECHANISMS: ReadonlySet<FileLockMechanism> = new Set(['auto', 'kernel', 'exclusive-create']);
/** Keys whose last attempt here was refused, remembered for the wait that follows. */
const MAX_REMEMBERED_BUSY = 10_000;
/** File names computed per key (a SHA-256 each), remembered for the keys in use. */
const MAX_REMEMBERED_FILES = 10_000;

/** A refused attempt, with what a waiter can watch. */
interface Busy {
  acquired: false;
  retryAfterMs: number | null;
  holderPid?: number;
}

interface Started {
  dir: string;
  mechanism: LockMechanism;
  watcher: ReleaseWatcher;
}

type Outcome = { acquired: true; fencingToken: number } | Busy;

/**
 * Locks for the processes of one host: a lock file per key, held with a kernel lock that dies
 * with its holder (or, where the filesystem cannot, with the degraded exclusive-create claims).
 * An exclusive holder's record (for `inspect`, `list` and stale-holder reports) lives in the lock
 * file itself; shared holders, and every holder in the degraded mode, get a record file each.
 */
export class FileLockBackend implements LockBackend {
  readonly name = 'file';
  /**
   * No `limit`: here a permit would have to die with its holder at once, like every other lock
   * of this backend, which takes one kernel-locked slot file per permit and a record of the
   * key's size beside them. Until that exists the call is refused (`LockNotSupportedError`,
   * README: Semaphores) rather than served with weaker crash semantics.
   */
  readonly capabilities = { shared: true, limit: false };
  private readonly logger = new Logger(FileLockBackend.name);
  private readonly dir: string;
  private readonly wanted: FileLockMechanism;
  private readonly recheckMs: number;
  private readonly stale: StaleHolders;
  private starting?: Promise<Started>;
  /** Set once started, so the hot path does not wait on a settled promise. */
  private started?: Started;
  private readonly fileNames = new Map<string, KeyFiles>();
  /**
   * Per anchor, after a failed attempt: watch events seen before it (so a release in between is
   * not missed) and the holder's pid when it is an exclusive holder on this host.
   */
  private readonly busySince = new Map<string, { seen: number; holderPid?: number }>();
  private stopListening?: () => void;

  constructor(options: FileBackendOptions = {}) {
    const { dir = './.locks', mechanism = 'auto', recheckMs = 25, onStale } = options;
    if (typeof dir !== 'string' || dir.length === 0 || dir.includes('\0')) {
      throw new LockOptionsError('file.dir must be a non-empty path');
    }
    if (!MECHANISMS.has(mechanism)) {
      throw new LockOptionsError(`file.mechanism must be 'auto', 'kernel' or 'exclusive-create', got ${String(mechanism)}`);
    }
    if (!Number.isInteger(recheckMs) || recheckMs < 1 || recheckMs > 60_000) {
      throw new LockOptionsError(`file.recheckMs must be an integer between 1 and 60000, got ${String(recheckMs)}`);
    }
    if (onStale !== undefined && typeof onStale !== 'function') throw new LockOptionsError('file.onStale must be a function');
    this.dir = dir;
    this.wanted = mechanism;
    this.recheckMs = recheckMs;
    this.stale = new StaleHolders(onStale);
  }

  /** Which mechanism this backend runs on (starting it if needed). */
  async mechanism(): Promise<LockMechanism['kind']> {
    return (await this.start()).mechanism.kind;
  }

  /** The lock directory, resolved (symlinks included). */
  async directory(): Promise<string> {
    return (await this.start()).dir;
  }

  async init(): Promise<void> {
    await this.start();
  }

  async tryAcquire(request: LockRequest): Promise<AcquireOutcome> {
    const { dir, mechanism, watcher } = this.started ?? (await this.start());
    const files = this.keyFiles(dir, request.key);
    const seen = watcher.mark(files.anchor);
    const outcome = await table.serialize(files.anchorPath, () => this.acquireHeld(mechanism, files, request));
    if (outcome.acquired) {
      this.busySince.delete(files.anchor);
      return outcome;
    }
    // Bounded: a forgotten entry only costs one wait without a known holder pid.
    if (this.busySince.size >= MAX_REMEMBERED_BUSY) this.busySince.clear();
    this.busySince.set(files.anchor, { seen, holderPid: outcome.holderPid });
    return { acquired: false, retryAfterMs: outcome.retryAfterMs };
  }

  async extend(leases: readonly ExtendRequest[]): Promise<boolean[]> {
    const { dir, mechanism } = this.started ?? (await this.start());
    return Promise.all(
      leases.map((lease) => {
        const files = this.keyFiles(dir, lease.key);
        return table.serialize(files.anchorPath, async () => {
          const held = table.get(files.anchorPath);
          const holder = held?.holders.get(lease.token);
          if (!held || !holder) return false;
          const ttlMs = Math.max(lease.ttlMs, ...[...held.holders.values()].map((other) => other.record.ttlMs));
          if (!(await held.claim.refresh(ttlMs))) {
            // Taken over (exclusive-create only: a kernel lock cannot be taken from us).
            table.delete(files.anchorPath);
            await held.claim.release();
            return false;
          }
          if (holder.record.ttlMs !== lease.ttlMs) {
            holder.record = { ...holder.record, ttlMs: lease.ttlMs };
            if (holder.recordPath) await writeRecord(files.holdersPath, holder.record);
            else held.claim.rewrite?.(holder.record);
          } else if (holder.recordPath && mechanism.kind === 'exclusive-create') {
            // Here the TTL matters: the record's mtime tells `inspect` how long the lease has left.
            const now = new Date();
            await utimes(holder.recordPath, now, now).catch(() => undefined);
          }
          return true;
        });
      }),
    );
  }

  async release(lease: LeaseRef): Promise<ReleaseOutcome> {
    const { dir } = this.started ?? (await this.start());
    const files = this.keyFiles(dir, lease.key);
    return table.serialize(files.anchorPath, () => {
      const held = table.get(files.anchorPath);
      const holder = held?.holders.get(lease.token);
      if (!held || !holder) return held ? 'not-owner' : 'expired';
      return andThen(this.dropHolders(held, [holder]), (stillOurs) => (stillOurs ? 'released' : 'not-owner'));
    });
  }

  async handOver(from: LeaseRef, to: LockRequest): Promise<{ fencingToken: number } | null> {
    const { dir, mechanism } = this.started ?? (await this.start());
    const files = this.keyFiles(dir, from.key);
    return table.serialize(files.anchorPath, async () => {
      const held = table.get(files.anchorPath);
      const holder = held?.holders.get(from.token);
      if (!held || !holder || held.mode !== 'exclusive' || to.mode !== 'exclusive') return null;
      const record = newRecord(to);
      const fencingToken = await held.claim.renew(record);
      if (fencingToken === null) return null;
      const recordPath = mechanism.keepsExclusiveRecord ? undefined : await writeRecord(files.holdersPath, record);
      held.holders.delete(from.token);
      if (holder.recordPath) await removeQuietly(holder.recordPath);
      held.holders.set(to.token, { token: to.token, record, recordPath, owner: this });
      return { fencingToken };
    });
  }

  async waitForRelease(key: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const { dir, watcher } = this.started ?? (await this.start());
    const { anchor } = this.keyFiles(dir, key);
    const busy = this.busySince.get(anchor) ?? { seen: watcher.mark(anchor) };
    await watcher.wait(anchor, busy.seen, timeoutMs, signal, busy.holderPid);
  }

  async inspect(key: string): Promise<LockRecord[]> {
    const { dir, mechanism } = await this.start();
    const found = await this.recordsOf(mechanism, this.keyFiles(dir, key));
    return found.map((entry) => this.stale.describe(entry, mechanism, 'inspect'));
  }

  async list({ prefix, limit }: ListOptions): Promise<LockRecord[]> {
    const { dir, mechanism } = await this.start();
    const found = (await readAllRecords(dir, (anchorPath) => mechanism.lockRecord(anchorPath)))
      .filter((entry) => entry.record.key.startsWith(prefix))
      .slice(0, limit);
    return found.map((entry) => this.stale.describe(entry, mechanism, 'list'));
  }

  /**
   * Kernel locks cannot be taken from a live process: a live holder is answered with
   * `held-by-live-process`; a lock that turns out free has its leftover records cleaned. Holders
   * of this process are evicted (they learn at their next heartbeat). In the degraded mode the
   * claim is taken over like an expired lease.
   */
  async forceRelease({ key, expectFencingToken }: ForceReleaseRequest): Promise<ForceReleaseOutcome> {
    const { dir, mechanism } = await this.start();
    const files = this.keyFiles(dir, key);
    return table.serialize(files.anchorPath, async () => {
      const held = table.get(files.anchorPath);
      if (held) {
        const holders = [...held.holders.values()];
        const [first] = holders;
        const previous = toLockRecord({ record: first.record, path: first.recordPath ?? files.anchorPath, mtimeMs: 0 }, held.claim.expiresInMs());
        if (expectFencingToken !== undefined && !holders.some((holder) => holder.record.fencingToken === expectFencingToken)) {
          return { outcome: 'changed-hands', current: previous };
        }
        await this.dropHolders(held, holders);
        return { outcome: 'released', previous };
      }
      const before = await this.recordsOf(mechanism, files);
      if (expectFencingToken !== undefined && before.length > 0 && !before.some((entry) => entry.record.fencingToken === expectFencingToken)) {
        return { outcome: 'changed-hands', current: this.stale.describe(before[0], mechanism, 'force-release') };
      }
      const reaped = await this.stale.reap(mechanism, files, true, 'force-release');
      if (!reaped.claim) {
        // No record yet (the holder is between locking and writing it): the lock file names
        // an exclusive holder of this host.
        const holder = before[0]?.record ?? (reaped.holderPid ? { pid: reaped.holderPid, hostname: HOSTNAME } : undefined);
        return { outcome: 'held-by-live-process', pid: holder?.pid ?? 0, hostname: holder?.hostname ?? 'unknown' };
      }
      if (reaped.leftovers.length === 0 && !reaped.tookOver) return { outcome: 'not-held' };
      return { outcome: 'released', previous: reaped.leftovers[0] ?? null };
    });
  }

  /** Give up this instance's holds and stop watching. */
  async close(): Promise<void> {
    const started = await this.starting?.catch(() => undefined);
    await Promise.all(
      table.entries().map((held) =>
        table.serialize(held.files.anchorPath, async () => {
          if (table.get(held.files.anchorPath) !== held) return;
          const ours = [...held.holders.values()].filter((holder) => holder.owner === this);
          if (ours.length > 0) await this.dropHolders(held, ours);
        }),
      ),
    );
    this.stopListening?.();
    started?.watcher.close();
    started?.mechanism.close();
  }

  // --- internals -------------------------------------------------------------------------

  private start(): Promise<Started> {
    this.starting ??= this.startOnce().then(
      (started) => (this.started = started),
      (error: unknown) => {
        // Let a later call retry (the directory may become available).
        this.starting = undefined;
        throw error;
      },
    );
    return this.starting;
  }

  private keyFiles(dir: string, key: string): KeyFiles {
    let files = this.fileNames.get(key);
    if (!files) {
      if (this.fileNames.size >= MAX_REMEMBERED_FILES) this.fileNames.clear();
      this.fileNames.set(key, (files = keyFiles(dir, key)));
    }
    return files;
  }

  private async startOnce(): Promise<Started> {
    const given = resolve(this.dir);
    await mkdir(given, { recursive: true, mode: 0o700 });
    // One spelling per directory, so the process-wide table sees one lock file as one.
    const dir = await realpath(given);
    const info = await stat(dir);
    if (!info.isDirectory()) throw new LockOptionsError(`file.dir ${dir} is not a directory`);
    if ((info.mode & 0o077) !== 0) {
      this.logger.warn(`Lock directory ${dir} is accessible to other users (mode ${(info.mode & 0o777).toString(8)}); 0700 is advised`);
    }
    const { mechanism, degradedBecause } = await chooseMechanism(dir, this.wanted);
    if (degradedBecause) {
      this.logger.warn(
        `File locks in ${dir} use exclusive-create claim files because ${degradedBecause}. ` +
          'Crash safety is now bounded by the TTL: a holder that dies keeps its keys until its lease runs out.',
      );
    }
    const watcher = new ReleaseWatcher(dir, this.recheckMs, (error) =>
      this.logger.warn(`Cannot watch ${dir} (${error.message}); waiters re-check every ${this.recheckMs} ms instead`),
    );
    await this.stale.sweep(dir, mechanism);
    const prefix = dir.endsWith(sep) ? dir : dir + sep;
    this.stopListening = table.onRelease((anchorPath) => {
      // A lock file right in this directory (checked without splitting the path: once per release).
      if (anchorPath.startsWith(prefix) && !anchorPath.includes(sep, prefix.length)) watcher.notify(anchorPath.slice(prefix.length));
    });
    return { dir, mechanism, watcher };
  }

  private acquireHeld(mechanism: LockMechanism, files: KeyFiles, request: LockRequest): Outcome | Promise<Outcome> {
    const held = table.get(files.anchorPath);
    const record = newRecord(request);
    if (held) return this.join(held, files, request, record);
    return andThen(mechanism.claim(files, request.mode, record), (attempt) => this.hold(mechanism, files, request, record, attempt));
  }

  /** Another module instance of this process has it: join a shared hold, never wait on ourselves. */
  private async join(held: HeldFile, files: KeyFiles, request: LockRequest, record: StoredRecord): Promise<Outcome> {
    if (held.mode !== 'shared' || request.mode !== 'shared') return { acquired: false, retryAfterMs: held.claim.expiresInMs() };
    // A degraded claim may have run out and been taken over by another process: renew it (which
    // fails once it is lost) before letting anyone join it. Kernel locks cannot be lost.
    if (held.claim.expiresInMs() !== null) {
      const ttlMs = Math.max(request.ttlMs, ...[...held.holders.values()].map((other) => other.record.ttlMs));
      if (!(await held.claim.refresh(ttlMs))) return { acquired: false, retryAfterMs: null };
    }
    record.fencingToken = held.claim.fencingToken;
    held.holders.set(request.token, await this.addHolder(files, request.token, record));
    return { acquired: true, fencingToken: held.claim.fencingToken };
  }

  /**
   * Register a granted claim: at once when no leftover is to be cleared and no record file to
   * be written (an exclusive grant on kernel locks, whose record the claim already wrote).
   */
  private hold(mechanism: LockMechanism, files: KeyFiles, request: LockRequest, record: StoredRecord, attempt: ClaimAttempt): Outcome | Promise<Outcome> {
    if (!attempt.claim) return { acquired: false, retryAfterMs: attempt.retryAfterMs, holderPid: attempt.holderPid };
    const { claim } = attempt;
    const register = (holder: LocalHolder): Outcome => {
      table.set({ files, mode: request.mode, claim, holders: new Map([[request.token, holder]]) });
      return { acquired: true, fencingToken: claim.fencingToken };
    };
    const keptInLock = request.mode === 'exclusive' && mechanism.keepsExclusiveRecord;
    if (keptInLock && !attempt.leftover && !attempt.scanRecords) return register({ token: request.token, record, owner: this });
    return this.prepareHolder(mechanism, files, request, record, attempt, keptInLock).then(register, async (error: unknown) => {
      await Promise.resolve(claim.release()).catch(() => undefined);
      throw error;
    });
  }

  private async prepareHolder(
    mechanism: LockMechanism,
    files: KeyFiles,
    request: LockRequest,
    record: StoredRecord,
    attempt: Granted,
    keptInLock: boolean,
  ): Promise<LocalHolder> {
    if (attempt.leftover || attempt.scanRecords) await this.stale.clearLeftovers(mechanism, files, request.mode, attempt, 'acquire');
    return keptInLock ? { token: request.token, record, owner: this } : this.addHolder(files, request.token, record);
  }

  private async addHolder(files: KeyFiles, token: string, record: StoredRecord): Promise<LocalHolder> {
    return { token, record, recordPath: await writeRecord(files.holdersPath, record), owner: this };
  }

  /** Every record of the key: record files and the exclusive holder's record in the lock, oldest first. */
  private async recordsOf(mechanism: LockMechanism, files: KeyFiles): Promise<FoundRecord[]> {
    const inLock = mechanism.lockRecord(files.anchorPath);
    const found = [...(await readRecords(files.holdersPath)), ...(inLock ? [inLock] : [])];
    return found.filter((entry) => entry.record.key === files.key).sort((a, b) => a.record.acquiredAt - b.record.acquiredAt);
  }

  /** Remove holders of this process; the last one out gives the lock up and wakes waiters. */
  private dropHolders(held: HeldFile, holders: LocalHolder[]): boolean | Promise<boolean> {
    for (const holder of holders) held.holders.delete(holder.token);
    // Record files first: the next holder must not find them and report us as dead (a record
    // kept in the lock is marked released by the claim's release).
    const recordFiles = holders.flatMap((holder) => (holder.recordPath ? [holder.recordPath] : []));
    if (recordFiles.length === 0) return this.giveUpIfLast(held);
    return Promise.all(recordFiles.map(removeQuietly)).then(() => this.giveUpIfLast(held));
  }

  private giveUpIfLast(held: HeldFile): boolean | Promise<boolean> {
    if (held.holders.size > 0) return true;
    table.delete(held.files.anchorPath);
    return andThen(held.claim.release(), (stillOurs) => {
      table.released(held.files.anchorPath);
      return stillOurs;
    });
  }
}
