import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Cron, Interval, ScheduleModule, Timeout } from '@nestjs/schedule';
import { performance } from 'node:perf_hooks';
import { LockModule, MemoryLockStore, WithLock } from '../../lib';
import { scheduledMinHold } from '../../lib/schedule/scheduled-min-hold';
import { until } from '../support/redis-server';

class Schedules {
  @Cron('* * * * * *')
  everySecond(): void {}

  @Cron('*/5 * * * * *')
  everyFiveSeconds(): void {}

  @Interval(2_000)
  interval(): void {}

  @Timeout(10)
  timeout(): void {}

  plain(): void {}
}

const method = (name: keyof Schedules): object => Schedules.prototype[name];

describe('the minimum hold derived from a schedule', () => {
  afterEach(() => jest.restoreAllMocks());

  function at(epochMs: number): void {
    jest.spyOn(Date, 'now').mockReturnValue(epochMs);
  }

  const second = Math.ceil(Date.now() / 10_000) * 10_000 + 60_000; // a whole ten seconds ahead

  it('@Cron: held until a tenth of the period before the next fire, whenever the timer fired', () => {
    const rule = scheduledMinHold(method('everySecond'));
    at(second + 5);
    expect(rule?.()).toBe(1_000 - 100 - 5);
    at(second + 300); // a late timer: the hold still ends 100 ms before the next tick
    expect(rule?.()).toBe(1_000 - 100 - 300);
    at(second - 1); // a timer a hair early belongs to this tick
    expect(rule?.()).toBe(1_000 - 100 + 1);
    at(second + 5);
    expect(scheduledMinHold(method('everyFiveSeconds'))?.()).toBe(5_000 - 500 - 5);
  });

  it('@Interval: the period less its gap; @Timeout: at least a minute; unscheduled: none', () => {
    expect(scheduledMinHold(method('interval'))?.()).toBe(1_800);
    expect(scheduledMinHold(method('timeout'))?.()).toBe(60_000);
    expect(scheduledMinHold(method('plain'))).toBeUndefined();
  });
});

/** Three replicas whose 200 ms intervals start at different moments, as at three bootstraps. */
@Injectable()
class IntervalJob {
  static runs: number[] = [];

  @Interval(200)
  @WithLock('interval-job')
  run(): void {
    IntervalJob.runs.push(performance.now());
  }
}

describe('@WithLock on @Interval across replicas', () => {
  it('runs once per interval across all replicas, not once per replica', async () => {
    const store = new MemoryLockStore();
    @Module({ imports: [ScheduleModule.forRoot(), LockModule.forRoot({ backend: 'memory', memory: { store } })], providers: [IntervalJob] })
    class AppModule {}
    const apps: INestApplicationContext[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
        await app.init();
        apps.push(app);
        await new Promise((resolve) => setTimeout(resolve, 70)); // phases 0, 70, 140 ms
      }
      const from = IntervalJob.runs.length;
      await until(() => IntervalJob.runs.length >= from + 8, 5_000, 'eight more runs');
      const runs = IntervalJob.runs.slice(from);
      const gaps = runs.slice(1).map((time, index) => time - runs[index]);
      // Held 180 ms from each grant: no two runs closer than that (three phases would give ~70 ms).
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(175);
    } finally {
      await Promise.all(apps.map((app) => app.close()));
    }
  });
});
