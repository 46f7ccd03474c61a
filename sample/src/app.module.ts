import { Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { LockModule } from '../../lib';
import { DocumentsController } from './documents.controller';
import { LOCK_BACKEND as backend } from './lock-backend';
import { ReindexJob } from './reindex.job';
import { ReportJob } from './report.job';
import { SpacesController } from './spaces.controller';
import { SpacesService } from './spaces.service';

@Module({
  imports: [
    ScheduleModule.forRoot(),
    LockModule.forRoot({
      backend,
      ttlMs: 10_000,
      file: { dir: process.env.LOCK_DIR ?? './.locks' },
      redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
    }),
  ],
  controllers: [SpacesController, DocumentsController],
  providers: [SpacesService, ReindexJob, ReportJob],
})
export class AppModule {}
