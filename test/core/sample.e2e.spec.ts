import { Logger, type INestApplication } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { AppModule } from '../../sample/src/app.module';
import { ReindexJob } from '../../sample/src/reindex.job';
import { ReportJob } from '../../sample/src/report.job';
import { SpaceLockService } from '../../lib';
import { until } from '../support/redis-server';

describe('the sample app', () => {
  let app: INestApplication;
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    // The tests call the scheduled jobs themselves: the scheduler's own ticks would race with them.
    app.get(SchedulerRegistry).getCronJobs().forEach((cron) => void cron.stop());
  });
  afterAll(() => app.close());

  it('answers 201 to the first sync of a space and 503 with Retry-After while it runs', async () => {
    const server = app.getHttpServer();
    const first = request(server).post('/spaces/demo/sync?seconds=1').then((response) => response);
    let holder: request.Response;
    do holder = await request(server).get('/spaces/demo/lock');
    while (holder.body.free);
    expect(holder.body).toMatchObject({ key: 'space:demo', local: true, pid: process.pid });
    const second = await request(server).post('/spaces/demo/sync?seconds=1');
    expect(second.status).toBe(503);
    expect(second.headers['retry-after']).toBeDefined();
    expect(await request(server).post('/spaces/demo/sync-from-code')).toMatchObject({ body: { skipped: 'in-progress' } });
    expect((await first).status).toBe(201);
    expect((await request(server).get('/spaces/demo/lock')).body).toEqual({ free: true });
  });

  it('reads a document with any number of readers at once; a write waits for them, alone', async () => {
    const server = app.getHttpServer();
    const locks = app.get(SpaceLockService);
    const readers = [1, 2].map(() => request(server).get('/documents/d1?seconds=1').then((response) => response));
    // Both readers hold the document's lock together.
    await until(async () => (await locks.inspectAll('document:d1')).length === 2, 5_000, 'two readers inside');
    const write = await request(server).put('/documents/d1').send({ text: 'hello' });
    expect(write.status).toBe(200);
    for (const response of await Promise.all(readers)) expect(response.body).toEqual({ id: 'd1', text: '', mode: 'shared' });
    expect((await request(server).get('/documents/d1')).body).toEqual({ id: 'd1', text: 'hello', mode: 'shared' });
  });

  it('runs at most 3 exports per tenant; the 4th answers 503 with Retry-After', async () => {
    const server = app.getHttpServer();
    const locks = app.get(SpaceLockService);
    const exports = [1, 2, 3].map(() => request(server).post('/exports/acme?seconds=2').then((response) => response));
    await until(async () => (await locks.inspectAll('export:acme')).length === 3, 5_000, 'three exports running');
    const fourth = await request(server).post('/exports/acme?seconds=1');
    expect(fourth.status).toBe(503);
    expect(Number(fourth.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    for (const response of await Promise.all(exports)) expect(response.body).toMatchObject({ tenant: 'acme', limit: 3 });
    expect((await request(server).post('/exports/globex?seconds=0')).status).toBe(201);
  });

  it('the scheduled-style job skips while another run holds the lock', async () => {
    const job = app.get(ReindexJob);
    const locks = app.get(SpaceLockService);
    // reindex() returns nothing either way: what tells a run from a skip is its log line and the lock.
    const log = jest.spyOn(Logger.prototype, 'log');
    try {
      let firstDone = false;
      const running = job.reindex('t').then(() => (firstDone = true));
      await expect(job.reindex('t')).resolves.toBeUndefined();
      // The second call came back while the first still ran and held the lock: it was skipped, not queued.
      expect(firstDone).toBe(false);
      // (The sample also campaigns for "housekeeping": its leader lease is not this job's.)
      const reindexLocks = (): string[] => locks.held().map((lock) => lock.key).filter((key) => key.startsWith('reindex:'));
      expect(reindexLocks()).toEqual(['reindex:t']);
      await running;
      const runs = log.mock.calls.filter(([message]) => message === 'reindexing t on this replica');
      expect(runs).toHaveLength(1);
      expect(reindexLocks()).toEqual([]);
    } finally {
      log.mockRestore();
    }
  });

  it('the sample leads "housekeeping" alone, so its @LeaderOnly job runs; the @Cron job is held past its run', async () => {
    const locks = app.get(SpaceLockService);
    const handle = locks.campaign('housekeeping');
    while (!handle.isLeader) await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await locks.leader('housekeeping'))?.term).toBe(handle.term);
    const job = app.get(ReportJob);
    // A tick that fired between bootstrap and stopping the crons holds the lock for the rest of
    // its period (at most 9 s): the store says when it is free.
    const free = async (): Promise<boolean> =>
      !locks.held().some((lock) => lock.key === 'report:daily-totals') && (await locks.inspect('report:daily-totals')) === null;
    await until(free, 15_000, 'the last tick\'s hold to end');
    const purges = job.purges;
    job.purgeExpiredSessions();
    expect(job.purges).toBe(purges + 1);
    // 2 s into a 10 s period: the tick's hold lasts until 1 s before the next one, 7 s from now.
    jest.spyOn(Date, 'now').mockReturnValue(Math.floor(Date.now() / 10_000) * 10_000 + 2_000);
    try {
      const runs = job.runs;
      await job.totals();
      expect(job.runs).toBe(runs + 1);
      // Called again at once: the tick's minimum hold still holds the lock, so the call is skipped.
      await job.totals();
      expect(job.runs).toBe(runs + 1);
      expect(await locks.inspect('report:daily-totals')).toMatchObject({ local: true });
    } finally {
      jest.restoreAllMocks();
    }
  });
});
