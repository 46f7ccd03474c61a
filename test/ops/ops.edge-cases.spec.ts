import 'reflect-metadata';
import { CanActivate, Injectable, INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Redis } from 'ioredis';
import request from 'supertest';
import { LockAdminModule, LockModule, SpaceLockService } from '../../lib';
import { runCli } from '../../lib/cli/run';
import { recordingIo } from './ops-support';

const REDIS_URL = 'redis://127.0.0.1:6379';

@Injectable()
class AllowAll implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/** Rewrites every holder record under `match` with `edit` (what another process could have written). */
async function rewriteHolders(redis: Redis, match: string, edit: (value: string) => string): Promise<number> {
  let cursor = '0';
  let count = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      if (!key.endsWith(':holder')) continue;
      const value = await redis.get(key);
      if (value === null) continue;
      await redis.set(key, edit(value), 'KEEPTTL');
      count += 1;
    }
  } while (cursor !== '0');
  return count;
}

describe('admin page: holder records written by another process (Redis)', () => {
  const keyPrefix = `r5edge:${process.pid}:page:`;
  let app: INestApplication;
  let locks: SpaceLockService;
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    const moduleRef = await Test.createTestingModule({
      imports: [
        LockModule.forRoot({ isGlobal: true, backend: 'redis', redis: { url: REDIS_URL }, keyPrefix, ownerId: 'edge-app' }),
        LockAdminModule.forRoot({ guards: [AllowAll] }),
      ],
    }).compile();
    moduleRef.useLogger(false);
    app = moduleRef.createNestApplication();
    await app.init();
    locks = app.get(SpaceLockService);
  });
  afterAll(async () => {
    await app?.close();
    redis?.disconnect();
  });

  it('GET /ui answers 200 (not 500) when a holder record carries an acquiredAt outside the Date range', async () => {
    const held = await locks.acquire('odd-clock', { ttlMs: 20_000 });
    try {
      // Record: ttlMs \n token \n fencingToken \n acquiredAt \n owner — a finite, but not a valid date.
      const edited = await rewriteHolders(redis, `*${keyPrefix}odd-clock*`, (value) => {
        const fields = value.split('\n');
        fields[3] = '1e20';
        return fields.join('\n');
      });
      expect(edited).toBe(1);
      const page = await request(app.getHttpServer()).get('/admin/locks/ui');
      expect(page.status).toBe(200);
      expect(page.text).toContain('odd-clock');
      const rows = await request(app.getHttpServer()).get('/admin/locks/ui/rows');
      expect(rows.status).toBe(200);
    } finally {
      await held.release().catch(() => undefined);
    }
  });

  it('CLI leader NAME prints the leader (exit 0, not a crash as exit 2) when its record has an acquiredAt outside the Date range', async () => {
    const held = await locks.acquire('leader:odd-clock', { ttlMs: 20_000 });
    try {
      const edited = await rewriteHolders(redis, `*${keyPrefix}leader:odd-clock*`, (value) => {
        const fields = value.split('\n');
        fields[3] = '1e20';
        return fields.join('\n');
      });
      expect(edited).toBe(1);
      const io = recordingIo();
      const code = await runCli(['leader', 'odd-clock', '--redis', REDIS_URL, '--key-prefix', keyPrefix], io);
      expect(io.stderr).toBe('');
      expect(code).toBe(0);
      expect(io.stdout).toContain('"odd-clock" is led by edge-app');
    } finally {
      await held.release().catch(() => undefined);
    }
  });
});

describe('CLI: --timeout beyond what a timer can wait', () => {
  it('is a usage error (exit 1), not "Redis did not answer" (exit 2)', async () => {
    const io = recordingIo();
    const code = await runCli(['list', '--redis', REDIS_URL, '--key-prefix', `r5edge:${process.pid}:cli:`, '--timeout', '3000000000'], io);
    expect(io.stderr).not.toMatch(/no answer within/);
    expect(code).toBe(1);
  });
});

describe('CLI list: holder records written by another process (Redis)', () => {
  const keyPrefix = `r5edge:${process.pid}:ansi:`;
  let app: INestApplication;
  let redis: Redis;

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ isGlobal: true, backend: 'redis', redis: { url: REDIS_URL }, keyPrefix, ownerId: 'edge-app' })],
    }).compile();
    moduleRef.useLogger(false);
    app = moduleRef.createNestApplication();
    await app.init();
  });
  afterAll(async () => {
    await app?.close();
    redis?.disconnect();
  });

  it('prints no terminal control sequences from an owner or hostname in a foreign record', async () => {
    const held = await app.get(SpaceLockService).acquire('ansi', { ttlMs: 20_000 });
    try {
      const hostile = { ownerId: 'evil\u001b]0;pwned\u0007\u001b[2J', instanceId: 'x', hostname: 'host\r\nFAKE ROW', pid: 1 };
      const edited = await rewriteHolders(redis, `*${keyPrefix}ansi*`, (value) => {
        const fields = value.split('\n');
        return [...fields.slice(0, 4), JSON.stringify(hostile)].join('\n');
      });
      expect(edited).toBe(1);
      const io = recordingIo();
      expect(await runCli(['list', '--redis', REDIS_URL, '--key-prefix', keyPrefix], io)).toBe(0);
      expect(io.stdout).toContain('evil');
      // eslint-disable-next-line no-control-regex
      expect(io.stdout.replace(/\n/g, '')).not.toMatch(/[\u0000-\u001f\u007f]/);
    } finally {
      await held.release().catch(() => undefined);
    }
  });
});

describe('reap route: holders in the answer are named like everywhere else (without keyPrefix)', () => {
  let app: INestApplication;
  let locks: SpaceLockService;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ isGlobal: true, keyPrefix: 'r5edge-mem:' }), LockAdminModule.forRoot({ guards: [AllowAll] })],
    }).compile();
    moduleRef.useLogger(false);
    app = moduleRef.createNestApplication();
    await app.init();
    locks = app.get(SpaceLockService);
  });
  afterAll(() => app?.close());

  it('409 changed-hands and 200 released carry the key as listed, not the store key', async () => {
    await locks.acquire('job', { ttlMs: 60_000 });
    const [listed] = await locks.list();
    expect(listed.key).toBe('job');
    const refused = await request(app.getHttpServer())
      .post('/admin/locks/reap')
      .set('content-type', 'application/json')
      .send({ key: 'job', reason: 'edge', expectFencingToken: listed.fencingToken + 1 });
    expect(refused.status).toBe(409);
    expect(refused.body.current.key).toBe('job');
    const reaped = await request(app.getHttpServer())
      .post('/admin/locks/reap')
      .set('content-type', 'application/json')
      .send({ key: 'job', reason: 'edge' });
    expect(reaped.status).toBe(200);
    expect(reaped.body.previous.key).toBe('job');
  });
});
