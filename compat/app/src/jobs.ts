import { Controller, Get, Inject, Injectable, Module, Param, type DynamicModule } from '@nestjs/common';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { LockModule, WithLock, type LockModuleOptions } from 'nestjs-lock';

/** Requests wait behind the gate until the e2e opens it, so the first one holds its lock meanwhile. */
export class Gate {
  open!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.open = resolve));
}
export const requestGate = { current: new Gate() };

@Controller('jobs')
export class JobsController {
  @Get(':id')
  @WithLock('job:{params.id}')
  async run(@Param('id') id: string): Promise<{ id: string }> {
    await requestGate.current.opened;
    return { id };
  }
}

@Module({})
export class HttpAppModule {
  static with(lock: LockModuleOptions): DynamicModule {
    return { module: HttpAppModule, imports: [LockModule.forRoot(lock)], controllers: [JobsController] };
  }
}

/** What the scheduled job saw across every replica of this process. */
export const reportRuns = { inside: 0, maxInside: 0, total: 0, byReplica: {} as Record<string, number> };
const REPLICA = Symbol('replica');

/** Ticks every 10 ms and works 40 ms: without the lock the replicas' runs would overlap. */
@Injectable()
export class ReportJob {
  constructor(@Inject(REPLICA) private readonly replica: string) {}

  @Interval(10)
  @WithLock('report')
  async report(): Promise<void> {
    reportRuns.inside += 1;
    reportRuns.maxInside = Math.max(reportRuns.maxInside, reportRuns.inside);
    await new Promise((resolve) => setTimeout(resolve, 40));
    reportRuns.inside -= 1;
    reportRuns.total += 1;
    reportRuns.byReplica[this.replica] = (reportRuns.byReplica[this.replica] ?? 0) + 1;
  }
}

@Module({})
export class WorkerModule {
  static replica(name: string, lock: LockModuleOptions): DynamicModule {
    return {
      module: WorkerModule,
      imports: [ScheduleModule.forRoot(), LockModule.forRoot(lock)],
      providers: [ReportJob, { provide: REPLICA, useValue: name }],
    };
  }
}
