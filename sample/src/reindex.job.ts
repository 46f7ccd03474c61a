import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { WithLock } from '../../lib';

/**
 * A scheduled-style job: every replica ticks, only the one holding the lock works.
 * (With @nestjs/schedule you would put @Cron next to @WithLock.)
 */
@Injectable()
export class ReindexJob implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(ReindexJob.name);
  private timer?: NodeJS.Timeout;

  onApplicationBootstrap(): void {
    this.timer = setInterval(() => void this.reindex('search'), 10_000);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  @WithLock('reindex:{0}', { ttlMs: 15_000 })
  async reindex(index: string): Promise<void> {
    this.logger.log(`reindexing ${index} on this replica`);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}
