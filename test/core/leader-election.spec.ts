import { Controller, Get, Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { EventPattern } from '@nestjs/microservices';
import { NestFactory } from '@nestjs/core';
import { performance } from 'node:perf_hooks';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import {
  InvalidLockKeyError,
  LeaderOnly,
  LockModule,
  LockOptionsError,
  MemoryLockStore,
  SpaceLockService,
  WithLock,
  type LeaderHandle,
} from '../../lib';
import { until } from '../support/redis-server';
import { lockApp, uniquePrefix, type LockApp } from '../redis/redis-test-app';
import { runCli } from '../../lib/cli/run';
import { recordingIo } from '../ops/ops-support';

describe('campaign() on the memory backend', () => {
  const apps: LockApp[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
  });

  async function replicas(count: number, store = new MemoryLockStore()): Promise<LockApp[]> {
    const made = await Promise.all(Array.from({ length: count }, () => lockApp({ backend: 'memory', memory: { store } })));
    apps.push(...made);
    return made;
  }

  it('elects exactly one leader; on resignation another takes over with a higher term', async () => {
    const group = await replicas(3);
    const elected: number[] = [];
    const revoked: number[] = [];
    const handles = group.map(({ locks }) =>
      locks.campaign('main', { onElected: ({ term }) => elected.push(term), onRevoked: ({ term }) => revoked.push(term) }),
    );
    await until(() => elected.length === 1, 2_000, 'a first leader');
    const first = handles.find((handle) => handle.isLeader) as LeaderHandle;
    expect(handles.filter((handle) => handle.isLeader)).toHaveLength(1);
    expect(first.term).toBe(elected[0]);
    expect(first.signal.aborted).toBe(false);
    expect(handles.filter((handle) => !handle.isLeader).every((handle) => handle.term === null && handle.signal.aborted)).toBe(true);

    const record = await group[0].locks.leader('main');
    expect(record).toMatchObject({ name: 'main', term: elected[0] });
    expect((await group[0].locks.list()).map((info) => info.key)).toContain('leader:main');

    const signal = first.signal;
    await first.resign();
    expect(signal.aborted).toBe(true);
    expect(revoked).toEqual([elected[0]]);
    await until(() => elected.length === 2, 2_000, 'a second leader');
    expect(elected[1]).toBeGreaterThan(elected[0]);
    expect(handles.filter((handle) => handle.isLeader)).toHaveLength(1);
    expect(first.isLeader).toBe(false);
    expect((await group[0].locks.leader('main'))?.term).toBe(elected[1]);
  });

  it('a leader paused past its lease reads isLeader false, with its signal aborted, before any timer runs', async () => {
    const paused = await lockApp({ backend: 'memory', ttlMs: 300 });
    apps.push(paused);
    const revoked: number[] = [];
    const handle = paused.locks.campaign('paused', { onRevoked: ({ term }) => revoked.push(term) });
    await until(() => handle.isLeader, 2_000, 'leadership');
    const { signal } = handle;
    // A synchronous pause, as SIGSTOP or a long GC would be: no heartbeat or keeper timer can run.
    const resumeAt = performance.now() + 400;
    while (performance.now() < resumeAt) {
      // busy
    }
    expect(handle.isLeader).toBe(false);
    expect(signal.aborted).toBe(true);
    expect(revoked).toHaveLength(1);
  });

  it('returns the same handle for a name this instance campaigns for already', async () => {
    const [only] = await replicas(1);
    const first = only.locks.campaign('solo');
    await until(() => first.isLeader, 2_000, 'leadership');
    let lateTerm: number | undefined;
    expect(only.locks.campaign('solo', { onElected: ({ term }) => (lateTerm = term) })).toBe(first);
    expect(lateTerm).toBe(first.term);
  });

  it('rejects bad names and options with typed errors', async () => {
    const [only] = await replicas(1);
    expect(() => only.locks.campaign('')).toThrow(InvalidLockKeyError);
    expect(() => only.locks.campaign('x', { onElected: 'no' as never })).toThrow(LockOptionsError);
    expect(() => only.locks.campaign('x', { ttlMs: -1 })).toThrow(LockOptionsError);
    expect(() => LeaderOnly('bad\nname')).toThrow(InvalidLockKeyError);
    await expect(only.locks.leader('nobody')).resolves.toBeNull();
  });
});

/** Every interval tick counts a run; `@LeaderOnly` above and below the schedule decorator. */
@Injectable()
class LeaderJobs {
  runs = { above: 0, below: 0, locked: 0 };

  @LeaderOnly('jobs')
  @Interval(20)
  above(): void {
    this.runs.above += 1;
  }

  @Interval(20)
  @LeaderOnly('jobs')
  below(): void {
    this.runs.below += 1;
  }

  @Interval(20)
  @WithLock('leader-locked')
  @LeaderOnly('jobs')
  locked(): void {
    this.runs.locked += 1;
  }
}

describe('@LeaderOnly', () => {
  it('runs scheduled methods only on the leader, in either decorator order, with @WithLock too', async () => {
    const store = new MemoryLockStore();
    @Module({ imports: [ScheduleModule.forRoot(), LockModule.forRoot({ backend: 'memory', memory: { store } })], providers: [LeaderJobs] })
    class AppModule {}
    const apps: INestApplicationContext[] = [];
    for (let i = 0; i < 2; i++) {
      const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
      await app.init();
      apps.push(app);
    }
    const jobs = apps.map((app) => app.get(LeaderJobs));
    const locks = apps.map((app) => app.get(SpaceLockService));
    const ranEverything = (job: LeaderJobs): boolean => job.runs.above >= 3 && job.runs.below >= 3 && job.runs.locked >= 3;
    await until(() => jobs.some(ranEverything), 3_000, 'the leader running its jobs');
    const leader = jobs.findIndex(ranEverything);
    const follower = 1 - leader;
    expect(locks[leader].campaign('jobs').isLeader).toBe(true);
    expect(jobs[follower].runs).toEqual({ above: 0, below: 0, locked: 0 });

    // The leader shuts down: the follower takes over and its jobs start running.
    await apps[leader].close();
    await until(() => ranEverything(jobs[follower]), 3_000, 'the follower taking over');
    await apps[follower].close();
  });
});

/** A microservice consumer: only the leader handles the events. */
@Controller()
class InvoiceConsumer {
  handled = 0;

  @EventPattern('invoice.due')
  @LeaderOnly('invoices')
  charge(_invoice: unknown): void {
    this.handled += 1;
  }
}

describe('@LeaderOnly on controllers', () => {
  it("runs a consumer's event handler only on the leader", async () => {
    const store = new MemoryLockStore();
    @Module({ imports: [LockModule.forRoot({ backend: 'memory', memory: { store } })], controllers: [InvoiceConsumer] })
    class ConsumerModule {}
    const apps = await Promise.all([0, 1].map(() => NestFactory.createApplicationContext(ConsumerModule, { logger: false })));
    try {
      await Promise.all(apps.map((app) => app.init()));
      const locks = apps.map((app) => app.get(SpaceLockService));
      await until(() => locks.some((service) => service.campaign('invoices').isLeader), 3_000, 'a leader elected');
      const leader = locks.findIndex((service) => service.campaign('invoices').isLeader);
      for (const app of apps) for (let event = 0; event < 3; event++) app.get(InvoiceConsumer).charge({ id: event });
      expect(apps.map((app) => app.get(InvoiceConsumer).handled)).toEqual(leader === 0 ? [3, 0] : [0, 3]);
    } finally {
      await Promise.all(apps.map((app) => app.close()));
    }
  });

  it('refuses an HTTP route at bootstrap: a request reaches any replica', async () => {
    @Controller('reports')
    class ReportsController {
      @Get()
      @LeaderOnly('reports')
      list(): string[] {
        return [];
      }
    }
    @Module({ imports: [LockModule.forRoot()], controllers: [ReportsController] })
    class RoutesModule {}
    await expect(NestFactory.createApplicationContext(RoutesModule, { logger: false, abortOnError: false })).rejects.toThrow(
      /@LeaderOnly on the HTTP route ReportsController.list\(\)/,
    );
  });
});

describe('who leads, from the CLI', () => {
  it('`leader NAME` prints the holder record (owner, since, term); `list` shows it as leader:NAME', async () => {
    const keyPrefix = uniquePrefix('cli-leader');
    const replica = await lockApp({ backend: 'redis', redis: { url: 'redis://127.0.0.1:6379' }, keyPrefix });
    try {
      const handle = replica.locks.campaign('ops');
      await until(() => handle.isLeader, 3_000, 'leadership');
      const record = await replica.locks.leader('ops');
      expect(record).toMatchObject({ name: 'ops', term: handle.term, local: true, pid: process.pid });
      const common = ['--redis', 'redis://127.0.0.1:6379', '--key-prefix', keyPrefix];
      const io = recordingIo();
      expect(await runCli(['leader', 'ops', 'nobody', ...common], io)).toBe(0);
      expect(io.stdout).toContain(`"ops" is led by ${record?.owner} (pid ${process.pid}`);
      expect(io.stdout).toContain(`term ${handle.term}`);
      expect(io.stdout).toContain('"nobody" has no leader.');
      const listed = recordingIo();
      expect(await runCli(['list', ...common], listed)).toBe(0);
      expect(listed.stdout).toContain('leader:ops');
    } finally {
      await replica.app.close();
    }
  });
});
