// One short end-to-end run per backend, in an app compiled against the installed nestjs-lock.
import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { NestFactory } from '@nestjs/core';
import { MemoryLockStore, SpaceLockService, type LockModuleOptions } from 'nestjs-lock';
import { Gate, HttpAppModule, WorkerModule, reportRuns, requestGate } from './jobs.js';

async function concurrentRequestsOnOneKey(lock: LockModuleOptions): Promise<void> {
  const app = await NestFactory.create(HttpAppModule.with(lock), { logger: false });
  await app.listen(0, '127.0.0.1');
  const url = `${(await app.getUrl()).replace('[::1]', '127.0.0.1')}/jobs/7`;
  requestGate.current = new Gate();
  try {
    const responses = Array.from({ length: 5 }, () => fetch(url));
    const settled: Response[] = [];
    for (const response of responses) void response.then((done) => settled.push(done));
    // Four answers come back while the fifth request holds the lock behind the gate.
    while (settled.length < 4) await new Promise((resolve) => setTimeout(resolve, 5));
    requestGate.current.open();
    const all = await Promise.all(responses);
    const statuses = all.map((response) => response.status).sort();
    assert.deepEqual(statuses, [200, 503, 503, 503, 503]);
    for (const busy of all.filter((response) => response.status === 503)) {
      assert.match(busy.headers.get('retry-after') ?? '', /^\d+$/, 'a 503 carries Retry-After');
    }
    assert.equal((await fetch(url)).status, 200, 'the lock is free again once the handler returned');
  } finally {
    await app.close();
  }
}

async function twoReplicas(lock: (replica: string) => LockModuleOptions): Promise<void> {
  Object.assign(reportRuns, { inside: 0, maxInside: 0, total: 0, byReplica: {} });
  const replicas = await Promise.all(
    ['a', 'b'].map((name) => NestFactory.createApplicationContext(WorkerModule.replica(name, lock(name)), { logger: false })),
  );
  try {
    const tokens: number[] = [];
    for (let turn = 0; turn < 6; turn += 1) {
      const locks = replicas[turn % 2]!.get(SpaceLockService);
      await locks.withSpaceLock('fenced-resource', async (held) => void tokens.push(held.fencingToken));
    }
    for (let i = 1; i < tokens.length; i += 1) assert.ok(tokens[i]! > tokens[i - 1]!, `fencing tokens increase: ${tokens.join(', ')}`);
    while (reportRuns.total < 4) await new Promise((resolve) => setTimeout(resolve, 10));
  } finally {
    await Promise.all(replicas.map((replica) => replica.close()));
  }
  assert.equal(reportRuns.maxInside, 1, 'the scheduled job never ran on two replicas at once');
}

async function main(): Promise<void> {
  const redisUrl = process.env['REDIS_URL'];
  assert.ok(redisUrl, 'REDIS_URL names the Redis the e2e runs on');
  const prefix = `compat:${process.pid}:${Date.now()}:`;
  const store = new MemoryLockStore();
  const backends: Record<string, { http: LockModuleOptions; replica: (name: string) => LockModuleOptions }> = {
    memory: { http: { backend: 'memory' }, replica: () => ({ backend: 'memory', memory: { store } }) },
    redis: {
      http: { backend: 'redis', redis: { url: redisUrl }, keyPrefix: `${prefix}http:` },
      replica: (name) => ({ backend: 'redis', redis: { url: redisUrl }, keyPrefix: `${prefix}workers:`, ownerId: `replica-${name}` }),
    },
  };
  for (const [name, backend] of Object.entries(backends)) {
    await concurrentRequestsOnOneKey(backend.http);
    await twoReplicas(backend.replica);
    console.log(`e2e ${name}: one 200 and four 503 with Retry-After; fencing tokens increase across two replicas; the scheduled job ran on one replica at a time (${JSON.stringify(reportRuns.byReplica)})`);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
