import { Injectable } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { discoverProvider } from '../discover-provider';
import { LockOptionsError } from '../lock.errors';
import { SpaceLockService } from '../space-lock.service';
import type { LockHealthOptions, LockHealthReport } from './lock-health';

/** A Terminus result: `{ [key]: { status, ...details } }` (`HealthIndicatorResult`). */
export type LockHealthIndicatorResult<Key extends string = string> = Record<Key, { status: 'up' | 'down' } & Record<string, unknown>>;

interface HealthIndicatorSessionLike {
  up(data: Record<string, unknown>): unknown;
  down(data: Record<string, unknown>): unknown;
}

interface HealthIndicatorServiceLike {
  check(key: string): HealthIndicatorSessionLike;
}

function isIndicatorService(value: unknown): value is HealthIndicatorServiceLike {
  return typeof value === 'object' && value !== null && typeof (value as HealthIndicatorServiceLike).check === 'function';
}

/**
 * The locks as a `@nestjs/terminus` (11, 12) health indicator, through Terminus's
 * `HealthIndicatorService`: down when the store does not answer within `timeoutMs`, a heartbeat
 * is late, or a lease was lost within `lossWindowMs` (see `SpaceLockService.health`).
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() { return this.health.check([() => this.locks.isHealthy('locks')]); }
 * ```
 *
 * Terminus stays optional: this class never loads it; it finds the `HealthIndicatorService`
 * the app's `TerminusModule` provides.
 */
@Injectable()
export class LockHealthIndicator {
  private indicators?: HealthIndicatorServiceLike;

  constructor(
    private readonly locks: SpaceLockService,
    private readonly discovery: DiscoveryService,
  ) {}

  async isHealthy<const Key extends string>(key: Key, options?: LockHealthOptions): Promise<LockHealthIndicatorResult<Key>> {
    const session = this.indicatorService().check(key);
    const report = await this.locks.health(options);
    return (report.healthy ? session.up(details(report)) : session.down(details(report))) as LockHealthIndicatorResult<Key>;
  }

  private indicatorService(): HealthIndicatorServiceLike {
    this.indicators ??= discoverProvider(this.discovery, ['HealthIndicatorService'], isIndicatorService);
    if (!this.indicators) {
      throw new LockOptionsError('LockHealthIndicator needs TerminusModule (@nestjs/terminus 11 or later) imported by the app');
    }
    return this.indicators;
  }
}

function details(report: LockHealthReport): Record<string, unknown> {
  const { backend, store, heartbeat, lastLossMsAgo, lossWindowMs } = report;
  return { backend, store, heartbeat, lastLossMsAgo, lossWindowMs };
}
