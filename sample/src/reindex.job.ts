import { Injectable, Logger } from '@nestjs/common';
import { Interval } from '@nestjs/schedule';
import { WithLock } from '../../lib';

/** Every replica ticks; only the one that gets the lock reindexes, the others skip quietly. */
@Injectable()
export class ReindexJob {
  private readonly logger = new Logger(ReindexJob.name);

  @Interval('reindex', 10_000)
  tick(): Promise<void> {
    return this.reindex('search');
  }

  @WithLock('reindex:{0}', { ttlMs: 15_000 })
  async reindex(index: string): Promise<void> {
    this.logger.log(`reindexing ${index} on this replica`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}
