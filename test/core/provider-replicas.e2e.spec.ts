import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LockModule, WithLock, type LockModuleOptions } from '../../lib';
import { RedisServer } from '../support/redis-server';
import { uniquePrefix } from '../redis/redis-test-app';

/** A scheduled-style job: every replica calls it at the same tick; it runs until `finish` resolves. */
@Injectable()
class ReportJob {
  runs = 0;

  @WithLock('report:{0}')
  async build(day: string, finish: Promise<void>): Promise<string> {
    this.runs += 1;
    await finish;
    return `built ${day}`;
  }
}

/**
 * README: "On a provider method (a scheduled job, a queue consumer): the run is skipped on
 * every replica but one." Three app instances on one store play three replicas.
 */
describe.each(['redis', 'file'] as const)('@WithLock on a provider method across replicas (%s)', (backend) => {
  let server: RedisServer | undefined;
  let dir: string | undefined;
  let replicas: INestApplicationContext[] = [];

  beforeAll(async () => {
    let store: LockModuleOptions;
    if (backend === 'redis') {
      server = await RedisServer.start();
      store = { backend: 'redis', redis: { url: server.url } };
    } else {
      dir = mkdtempSync(join(tmpdir(), 'nestjs-lock-provider-replicas-'));
      store = { backend: 'file', file: { dir } };
    }
    const keyPrefix = uniquePrefix(`provider-${backend}`);
    replicas = await Promise.all(
      [0, 1, 2].map(async () => {
        @Module({ imports: [LockModule.forRoot({ ...store, keyPrefix })], providers: [ReportJob] })
        class ReplicaModule {}
        const app = await NestFactory.createApplicationContext(ReplicaModule, { logger: false });
        await app.init();
        return app;
      }),
    );
  });

  afterAll(async () => {
    await Promise.all(replicas.map((app) => app.close()));
    await server?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the same tick on three replicas runs once; the others return at once, skipped', async () => {
    const jobs = replicas.map((app) => app.get(ReportJob));
    for (const day of ['mon', 'tue', 'wed']) {
      const runsBefore = jobs.map((job) => job.runs);
      let finish!: () => void;
      const finished = new Promise<void>((resolve) => (finish = resolve));
      const settled: (string | undefined)[] = [];
      // All three call in the same tick, as replicas whose timers fire together.
      const calls = jobs.map((job) => job.build(day, finished).then((result) => void settled.push(result)));
      // The skipped calls come back while the one run still holds the lock.
      await waitFor(() => settled.length === 2);
      expect(settled).toEqual([undefined, undefined]);
      finish();
      await Promise.all(calls);
      expect(settled).toEqual([undefined, undefined, `built ${day}`]);
      const ran = jobs.map((job, index) => job.runs - runsBefore[index]);
      expect(ran.reduce((sum, count) => sum + count, 0)).toBe(1);
    }
    // Free again once the run ended: a later tick runs.
    expect(await jobs[2].build('thu', Promise.resolve())).toBe('built thu');
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > giveUpAt) throw new Error(`not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
