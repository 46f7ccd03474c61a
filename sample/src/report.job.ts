import { Injectable, Logger } from '@nestjs/common';
import { Cron } from '@nestjs/schedule';
import { LeaderOnly, SpaceLockService, WithLock } from '../../lib';

/**
 * Run once across replicas, two ways:
 * - `@Cron` + `@WithLock`: every replica's cron fires, exactly one runs each tick, even with the
 *   replicas' clocks a few hundred ms apart (the lock is held until shortly before the next tick).
 * - `@LeaderOnly`: only the elected leader runs it; when the leader stops, another takes over.
 */
@Injectable()
export class ReportJob {
  private readonly logger = new Logger(ReportJob.name);
  runs = 0;
  purges = 0;

  constructor(private readonly locks: SpaceLockService) {}

  @Cron('*/10 * * * * *')
  @WithLock('report:daily-totals')
  totals(): void {
    this.runs += 1;
    this.logger.log('adding up the totals on this replica');
  }

  @Cron('*/30 * * * * *')
  @LeaderOnly('housekeeping')
  purgeExpiredSessions(): void {
    this.purges += 1;
    const term = this.locks.campaign('housekeeping').term;
    this.logger.log(`purging expired sessions as the leader (term ${String(term)})`);
  }
}
