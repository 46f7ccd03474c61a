import { Injectable, Module } from '@nestjs/common';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import { LockModule, WithLock } from '../../lib';

/** Interval ticks every 10 ms, work takes 60 ms: without the lock runs would overlap. */
@Injectable()
class TickJob {
  readonly inside = { below: 0, above: 0 };
  readonly maxInside = { below: 0, above: 0 };
  readonly runs = { below: 0, above: 0 };

  @Interval(10)
  @WithLock('tick:below')
  async lockBelowInterval(): Promise<void> {
    await this.work('below');
  }

  @WithLock('tick:above')
  @Interval(10)
  async lockAboveInterval(): Promise<void> {
    await this.work('above');
  }

  private async work(which: 'below' | 'above'): Promise<void> {
    this.inside[which] += 1;
    this.runs[which] += 1;
    this.maxInside[which] = Math.max(this.maxInside[which], this.inside[which]);
    await new Promise((resolve) => setTimeout(resolve, 60));
    this.inside[which] -= 1;
  }
}

describe('@WithLock with @nestjs/schedule', () => {
  it('locks @Interval handlers although the (global) ScheduleModule registers them first', async () => {
    @Module({ imports: [ScheduleModule.forRoot(), LockModule.forRoot()], providers: [TickJob] })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    await moduleRef.init();
    const job = moduleRef.get(TickJob);
    while (job.runs.below < 3 || job.runs.above < 3) await new Promise((resolve) => setTimeout(resolve, 10));
    await moduleRef.close();
    expect(job.maxInside).toEqual({ below: 1, above: 1 });
  });
});
