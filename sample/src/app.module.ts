import { Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { LockAdminModule, LockModule } from '../../lib';
import { DocumentsController } from './documents.controller';
import { HealthController } from './health.controller';
import { LocalhostOnlyGuard } from './localhost-only.guard';
import { LOCK_BACKEND as backend } from './lock-backend';
import { ReindexJob } from './reindex.job';
import { ReportJob } from './report.job';
import { SpacesController } from './spaces.controller';
import { SpacesService } from './spaces.service';

@Module({
  imports: [
    ScheduleModule.forRoot(),
    TerminusModule,
    LockModule.forRoot({
      isGlobal: true, // LockAdminModule needs it
      backend,
      ttlMs: 10_000,
      file: { dir: process.env.LOCK_DIR ?? './.locks' },
      redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    }),
    // GET /admin/locks/ui: the live page of holders; JSON under /admin/locks. From this machine only.
    LockAdminModule.forRoot({ guards: [LocalhostOnlyGuard] }),
  ],
  controllers: [SpacesController, DocumentsController, HealthController],
  providers: [SpacesService, ReindexJob, ReportJob],
})
export class AppModule {}
