import 'reflect-metadata';
import { CanActivate, ExecutionContext, Injectable, INestApplication, INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { LockAdminModule, LockModule, LockOptionsError, MemoryLockStore, SpaceLockService, type HeldLock, type LockModuleOptions } from '../../lib';
import { until } from '../support/redis-server';
import { uniquePrefix } from './ops-support';

/** Lets requests with `x-admin: yes` through, like a real role check would. */
@Injectable()
class AdminHeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-admin'] === 'yes';
  }
}

const admin = { 'x-admin': 'yes' };
const HOSTILE_KEY = `page:<img src=x onerror="alert(1)">&'`;

/** A second module instance on the same store: another replica, as far as the page can tell. */
async function replica(options: LockModuleOptions): Promise<{ context: INestApplicationContext; locks: SpaceLockService }> {
  const context = await NestFactory.createApplicationContext(LockModule.forRoot(options), { logger: false });
  await context.init();
  return { context, locks: context.get(SpaceLockService) };
}

describe('LockAdminModule page options', () => {
  it.each([
    ['a refresh below 500 ms', { refreshMs: 100 }],
    ['a fractional refresh', { refreshMs: 1500.5 }],
    ['a page option that is not an object', 'yes'],
  ])('refuses %s', (_, ui) => {
    expect(() => LockAdminModule.forRoot({ guards: [AdminHeaderGuard], ui: ui as never })).toThrow(LockOptionsError);
  });
});

describe.each(['express', 'fastify'] as const)('LockAdminModule page over HTTP (%s)', (platform) => {
  const store = new MemoryLockStore();
  let app: INestApplication;
  let locks: SpaceLockService;
  let other: Awaited<ReturnType<typeof replica>>;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        LockModule.forRoot({ isGlobal: true, ownerId: 'page-app', memory: { store } }),
        LockAdminModule.forRoot({ guards: [AdminHeaderGuard], ui: { refreshMs: 1_000 } }),
      ],
    }).compile();
    moduleRef.useLogger(false);
    app = platform === 'fastify' ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter()) : moduleRef.createNestApplication();
    await app.init();
    if (platform === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
    locks = app.get(SpaceLockService);
    other = await replica({ ownerId: `other-replica<b>`, memory: { store } });
  });
  afterAll(async () => {
    await other.context.close();
    await app.close();
  });

  const http = () => request(app.getHttpServer());

  it('answers 403 on every page route without the guard\'s consent', async () => {
    for (const route of ['/admin/locks/ui', '/admin/locks/ui/rows', '/admin/locks/ui/page.js', '/admin/locks/ui/page.css']) {
      expect([route, (await http().get(route)).status]).toEqual([route, 403]);
    }
  });

  it('renders holders of every replica escaped, with a strict CSP and no inline script or style', async () => {
    const hostile = await other.locks.acquire(HOSTILE_KEY, { ttlMs: 20_000 });
    const mine = await locks.acquire(`page:mine-${platform}`);
    try {
      const page = await http().get('/admin/locks/ui').query({ prefix: 'page:' }).set(admin).expect(200);
      expect(page.headers['content-type']).toMatch(/^text\/html; charset=utf-8/);
      const csp = String(page.headers['content-security-policy']);
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("style-src 'self'");
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|\*/);
      expect(page.headers['x-content-type-options']).toBe('nosniff');
      expect(page.headers['cache-control']).toBe('no-store');

      const html = page.text;
      // Every script and stylesheet is a file of ours; no inline handlers or styles.
      expect(html.match(/<script\b[^>]*>/g)).toEqual(['<script src="ui/page.js" defer>']);
      expect(html).toContain('<link rel="stylesheet" href="ui/page.css">');
      // Attribute names only (values are quoted, their quotes escaped), of every tag.
      const tags = (html.match(/<[a-z][^>]*>/gi) ?? []).map((tag) => tag.replace(/"[^"]*"/g, '""'));
      expect(tags.filter((tag) => /^<style\b|\s(style|on[a-z]+)=/i.test(tag))).toEqual([]);
      // The key and the owner are data: shown, never markup.
      expect(html).toContain('page:&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;');
      expect(html).toContain('other-replica&lt;b&gt;');
      expect(html).not.toContain('<img');
      expect(html).not.toContain('<b>');
      expect(html).toContain(`<code>page:mine-${platform}</code>`);
      expect(html).toMatch(/page-app <span class="badge local">this instance<\/span>/);
      expect(html).toContain(`data-fence="${hostile.fencingToken}"`);
      expect(html).toMatch(/<meter min="0" max="20000" [^>]*value="\d+"/);
      expect(html).toContain('data-refresh-ms="1000"');
      expect(html).toContain('data-reap-url="ui/../reap"');

      const filtered = await http().get('/admin/locks/ui/rows').query({ prefix: `page:mine-${platform}` }).set(admin).expect(200);
      expect(filtered.headers['content-security-policy']).toBe(csp);
      expect(filtered.text).toContain(`1 holder under <code>page:mine-${platform}</code>`);
      expect(filtered.text).not.toContain('other-replica');
      const none = await http().get('/admin/locks/ui/rows').query({ prefix: 'nobody:' }).set(admin).expect(200);
      expect(none.text).toContain('Nobody holds a lock under <code>nobody:</code>.');
      const limited = await http().get('/admin/locks/ui/rows').query({ prefix: 'page:', limit: '1' }).set(admin).expect(200);
      expect(limited.text).toContain('(the first 1; there may be more)');
    } finally {
      await hostile.release();
      await mine.release();
    }
  });

  it('counts waiters in the store (any replica) and behind this instance\'s own holder', async () => {
    const key = `page:queue-${platform}`;
    const held = await locks.acquire(key);
    const waiting: Promise<HeldLock>[] = [other.locks.acquire(key, { waitMs: 10_000 }), locks.acquire(key, { waitMs: 10_000 })];
    await until(async () => {
      const { queued, local } = await locks.waiters(key);
      return queued === 1 && local === 1;
    }, 5_000, 'one waiter in the store and one local');
    const rows = await http().get('/admin/locks/ui/rows').query({ prefix: key }).set(admin).expect(200);
    expect(rows.text).toContain('<td class="waiters">2<small>1 of this instance</small></td>');
    // Each waiter lets go as soon as it has the lock, so the other one gets it too.
    await held.release();
    await Promise.all(waiting.map(async (taking) => (await taking).release()));
    expect(await locks.waiters(key)).toEqual({ queued: 0, local: 0 });
  });

  it('serves its script and stylesheet with their types, and answers bad input with 400', async () => {
    const script = await http().get('/admin/locks/ui/page.js').set(admin).expect(200);
    expect(script.headers['content-type']).toMatch(/^text\/javascript/);
    expect(script.text).toContain("createPolicy('nestjs-lock-admin'");
    const styles = await http().get('/admin/locks/ui/page.css').set(admin).expect(200);
    expect(styles.headers['content-type']).toMatch(/^text\/css/);
    await http().get('/admin/locks/ui').query({ limit: 'all' }).set(admin).expect(400);
    await http().get('/admin/locks/ui/rows').query('prefix=a&prefix=b').set(admin).expect(400);
  });

  it('refuses a reap posted as a form or from another site, and leaves the lock held', async () => {
    const key = `page:csrf-${platform}`;
    const lock = await other.locks.acquire(key);
    await http().post('/admin/locks/reap').set(admin).type('form').send({ key, reason: 'csrf' }).expect(415);
    await http().post('/admin/locks/reap').set(admin).set('sec-fetch-site', 'cross-site').send({ key, reason: 'csrf' }).expect(403);
    expect(await locks.inspect(key)).toMatchObject({ fencingToken: lock.fencingToken });
    await http().post('/admin/locks/reap').set(admin).set('sec-fetch-site', 'same-origin').send({ key, reason: 'page', expectFencingToken: lock.fencingToken }).expect(200);
    expect(await locks.inspect(key)).toBeNull();
    await lock.release();
  });
});

describe('LockAdminModule page links and opt-out', () => {
  it('links relative to where the page was asked (…/ui/ as well), under a custom path', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ isGlobal: true }), LockAdminModule.forRoot({ guards: [AdminHeaderGuard], path: 'ops/locks' })],
    }).compile();
    moduleRef.useLogger(false);
    const app = moduleRef.createNestApplication();
    await app.init();
    try {
      const slash = await request(app.getHttpServer()).get('/ops/locks/ui/').set(admin).expect(200);
      expect(slash.text).toContain('<script src="page.js" defer>');
      expect(slash.text).toContain('data-rows-url="rows" data-reap-url="../reap"');
      expect(slash.text).toContain('data-refresh-ms="2000"');
    } finally {
      await app.close();
    }
  });

  it('serves no page with ui: false', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot({ isGlobal: true }), LockAdminModule.forRoot({ guards: [AdminHeaderGuard], ui: false })],
    }).compile();
    moduleRef.useLogger(false);
    const app = moduleRef.createNestApplication();
    await app.init();
    try {
      await request(app.getHttpServer()).get('/admin/locks/ui').set(admin).expect(404);
      await request(app.getHttpServer()).get('/admin/locks').set(admin).expect(200);
    } finally {
      await app.close();
    }
  });
});

describe('waiters(key) on Redis', () => {
  const keyPrefix = uniquePrefix('admin-page-waiters');
  let holder: Awaited<ReturnType<typeof replica>>;
  let waiter: Awaited<ReturnType<typeof replica>>;
  beforeAll(async () => {
    holder = await replica({ backend: 'redis', redis: { url: 'redis://127.0.0.1:6379' }, keyPrefix });
    waiter = await replica({ backend: 'redis', redis: { url: 'redis://127.0.0.1:6379' }, keyPrefix });
  });
  afterAll(async () => {
    await waiter.context.close();
    await holder.context.close();
  });

  it('counts the callers queued in Redis from another replica', async () => {
    const lock = await holder.locks.acquire('job');
    expect(await holder.locks.waiters('job')).toEqual({ queued: 0, local: 0 });
    const waiting = waiter.locks.acquire('job', { waitMs: 10_000 });
    await until(async () => (await holder.locks.waiters('job')).queued === 1, 5_000, 'the waiter queued in Redis');
    await lock.release();
    await (await waiting).release();
    expect(await holder.locks.waiters('job')).toEqual({ queued: 0, local: 0 });
  });
});
