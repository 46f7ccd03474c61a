import { Logger, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { AppModule } from '../../sample/src/app.module';
import { ReindexJob } from '../../sample/src/reindex.job';
import { SpaceLockService } from '../../lib';

describe('the sample app', () => {
  let app: INestApplication;
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
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
      expect(locks.held().map((lock) => lock.key)).toEqual(['reindex:t']);
      await running;
      const runs = log.mock.calls.filter(([message]) => message === 'reindexing t on this replica');
      expect(runs).toHaveLength(1);
      expect(locks.held()).toEqual([]);
    } finally {
      log.mockRestore();
    }
  });
});
