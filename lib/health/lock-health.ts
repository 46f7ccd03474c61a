import { performance } from 'node:perf_hooks';
import { LeaseKeeper } from '../lease-keeper';
import type { LeaseLoss } from '../lease-loss';
import type { LocalKeyTable } from '../local-key-table';
import type { LockBackend } from '../lock-backend.interface';
import { errorMessage, LockOptionsError } from '../lock.errors';
import type { ResolvedLockModuleOptions } from '../lock-module-options.interface';
import { assertDuration } from '../lock-options.validation';
import type { StoreCalls } from '../store-calls';
import { settleWithin } from '../settle-within';

export interface LockHealthOptions {
  /** The store must answer a read within this. Default: the module's `backendTimeoutMs`, at most 1 000 ms. */
  timeoutMs?: number;
  /** Unhealthy while a lease was lost (not at shutdown) within this window. Default 60 000 ms. */
  lossWindowMs?: number;
}

/** What `SpaceLockService.health()` found; `healthy` when all three checks pass. */
export interface LockHealthReport {
  healthy: boolean;
  backend: string;
  store: { ok: boolean; latencyMs: number; error?: string };
  /** Held leases whose last confirmed heartbeat is older than one heartbeat plus `backendTimeoutMs`. */
  heartbeat: { ok: boolean; leases: number; late: number };
  /** Milliseconds since the last lease lost while held, `null` if none was. */
  lastLossMsAgo: number | null;
  lossWindowMs: number;
}

/** The probe key: never taken, only read. */
const PROBE_KEY = '__health__';

/**
 * The three questions a readiness check asks of the locks: does the store answer in time, are
 * the heartbeats on time, was no lease lost lately? Read only: nothing here takes a lock.
 */
export class LockHealth {
  constructor(
    private readonly backend: LockBackend,
    private readonly options: ResolvedLockModuleOptions,
    private readonly calls: StoreCalls,
    private readonly table: LocalKeyTable,
    private readonly loss: LeaseLoss,
  ) {}

  async check(given: LockHealthOptions = {}): Promise<LockHealthReport> {
    if (typeof given !== 'object' || given === null) throw new LockOptionsError('health options must be an object');
    const timeoutMs = given.timeoutMs ?? Math.min(this.options.backendTimeoutMs, 1_000);
    const lossWindowMs = given.lossWindowMs ?? 60_000;
    assertDuration('timeoutMs', timeoutMs);
    assertDuration('lossWindowMs', lossWindowMs, { allowZero: true });
    const store = await this.probeStore(timeoutMs);
    const heartbeat = this.heartbeats();
    const sinceLoss = performance.now() - this.loss.lastLostAt;
    const lastLossMsAgo = Number.isFinite(sinceLoss) ? Math.round(sinceLoss) : null;
    const lossOk = lastLossMsAgo === null || lastLossMsAgo > lossWindowMs;
    return { healthy: store.ok && heartbeat.ok && lossOk, backend: this.backend.name, store, heartbeat, lastLossMsAgo, lossWindowMs };
  }

  private async probeStore(timeoutMs: number): Promise<LockHealthReport['store']> {
    const startedAt = performance.now();
    try {
      const probe = this.calls.call('inspect', () => this.backend.inspect(this.options.keyPrefix + PROBE_KEY));
      await settleWithin(probe, timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`));
      return { ok: true, latencyMs: Math.round(performance.now() - startedAt) };
    } catch (error) {
      return { ok: false, latencyMs: Math.round(performance.now() - startedAt), error: errorMessage(error) };
    }
  }

  /** A lease's last confirmation is when its `deadline` was computed: `deadline - (ttl - margin)`. */
  private heartbeats(): LockHealthReport['heartbeat'] {
    const now = performance.now();
    let leases = 0;
    let late = 0;
    for (const lease of this.table.leases()) {
      // Leases inside their minimum hold after the work ended get no heartbeat: nothing is late.
      if (lease.state !== 'held' || lease.keeperSlot < 0) continue;
      leases += 1;
      const confirmedAt = lease.deadline - LeaseKeeper.deadlineFrom(0, lease.ttlMs);
      if (now - confirmedAt > lease.heartbeatMs + this.options.backendTimeoutMs) late += 1;
    }
    return { ok: late === 0, leases, late };
  }
}
