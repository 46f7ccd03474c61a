import {
  CanActivate,
  Controller,
  ExecutionContext,
  Get,
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  INestApplication,
  Module,
  Param,
  Post,
  Query,
  Scope,
  SetMetadata,
  Type,
  UseGuards,
} from '@nestjs/common';
import { NestFactory, Reflector } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { INTERCEPTORS_METADATA, PATH_METADATA, METHOD_METADATA } from '@nestjs/common/constants';
import request from 'supertest';
import { performance } from 'node:perf_hooks';
import { interval, take, tap, type Observable } from 'rxjs';
import {
  CurrentLock,
  InvalidLockKeyError,
  LockBackend,
  LockHeldError,
  LockInterceptor,
  LockModule,
  LockOptionsError,
  MemoryLockBackend,
  MemoryLockStore,
  SpaceLockService,
  WithLock,
  type HeldLock,
  type LockModuleOptions,
} from '../../lib';
import { Gate } from '../support/gate';


const gates = new Map<string, Gate>();
const streamed: string[][] = [];
let locksForStream: SpaceLockService | undefined;
const entered: string[] = [];

@Controller('spaces')
class SpacesController {
  @Post(':spaceId/sync')
  @WithLock('space:{params.spaceId}')
  async sync(@Param('spaceId') spaceId: string, @CurrentLock() lock: HeldLock): Promise<object> {
    entered.push(spaceId);
    await gates.get(spaceId)?.open;
    return { spaceId, fencingToken: lock.fencingToken };
  }

  @Get('by-tenant')
  @WithLock('tenant:{headers.x-tenant}:{query.job}')
  byTenant(@Query('job') job: string): object {
    return { job };
  }

  @Get('by-header')
  @WithLock('tenant:{headers.X-Tenant}')
  byHeader(): object {
    return { ok: true };
  }

  /** Emits over time: the lock must be held until the stream completes. */
  @Get('stream')
  @WithLock('stream')
  stream(): Observable<number> {
    return interval(40).pipe(
      take(3),
      tap(() => streamed.push(locksForStream?.held().map((lock) => lock.key) ?? [])),
    );
  }

  @Get('computed')
  @WithLock((context) => `computed:${context.getHandler().name}`)
  computed(@CurrentLock() lock: HeldLock): object {
    return { key: lock.key, held: locksForStream?.held().map((held) => held.key) };
  }
}

@Injectable()
class NightlyJob {
  runs = 0;
  @WithLock('nightly:{0.region}')
  async run(job: { region: string }, gate?: Gate): Promise<string> {
    this.runs += 1;
    await gate?.open;
    return `done ${job.region}`;
  }

  @WithLock('strict:{0}', { onLocked: 'throw' })
  async strict(id: string, gate?: Gate): Promise<string> {
    await gate?.open;
    return id;
  }
}

function appModule(options: LockModuleOptions = {}) {
  @Module({ imports: [LockModule.forRoot(options)], controllers: [SpacesController], providers: [NightlyJob] })
  class AppModule {}
  return AppModule;
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 2));
}

describe.each(['express', 'fastify'] as const)('@WithLock over HTTP (%s)', (platform) => {
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [appModule()] }).compile();
    app =
      platform === 'fastify'
        ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter())
        : moduleRef.createNestApplication();
    await app.init();
    if (platform === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  });
  afterAll(() => app.close());
  beforeEach(() => {
    gates.clear();
    entered.length = 0;
  });

  it('20 concurrent requests on one key: one 200, nineteen 503 with Retry-After; then 200 again', async () => {
    const gate = new Gate();
    gates.set('s1', gate);
    const server = app.getHttpServer();
    const first = request(server).post('/spaces/s1/sync').then((response) => response);
    await until(() => entered.length === 1);
    const others = await Promise.all(Array.from({ length: 19 }, () => request(server).post('/spaces/s1/sync')));
    gate.release();
    const winner = await first;
    expect(winner.status).toBe(201);
    expect(winner.body).toMatchObject({ spaceId: 's1', fencingToken: expect.any(Number) });
    expect(others.map((response) => response.status)).toEqual(Array(19).fill(503));
    for (const response of others) {
      expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(response.body).toMatchObject({ statusCode: 503, key: 'space:s1' });
    }
    expect(entered).toEqual(['s1']);
    const after = await request(server).post('/spaces/s1/sync');
    expect(after.status).toBe(201);
  });

  it('different keys do not block each other', async () => {
    const gate = new Gate();
    gates.set('a', gate);
    const server = app.getHttpServer();
    const slow = request(server).post('/spaces/a/sync').then((response) => response);
    await until(() => entered.length === 1);
    const other = await request(server).post('/spaces/b/sync');
    expect(other.status).toBe(201);
    gate.release();
    expect((await slow).status).toBe(201);
  });

  it('a template value that is missing answers 400, never a lock on "undefined"', async () => {
    const server = app.getHttpServer();
    const missing = await request(server).get('/spaces/by-tenant?job=x');
    expect(missing.status).toBe(400);
    const ok = await request(server).get('/spaces/by-tenant?job=x').set('X-Tenant', 'acme');
    expect(ok.status).toBe(200);
    const locks = app.get(SpaceLockService);
    expect(await locks.list()).toEqual([]);
  });

  it('client values that cannot name a lock answer 400', async () => {
    const server = app.getHttpServer();
    expect((await request(server).post('/spaces/%0A/sync')).status).toBe(400);
    const longJob = await request(server).get(`/spaces/by-tenant?job=${'x'.repeat(600)}`).set('X-Tenant', 'acme');
    expect(longJob.status).toBe(400);
    expect(entered).toEqual([]);
  });

  it('header templates match whatever case the template uses', async () => {
    const server = app.getHttpServer();
    expect((await request(server).get('/spaces/by-header').set('x-tenant', 'acme')).status).toBe(200);
    expect((await request(server).get('/spaces/by-header')).status).toBe(400);
  });

  it('a streaming handler keeps the lock until its last value', async () => {
    locksForStream = app.get(SpaceLockService);
    streamed.length = 0;
    const response = await request(app.getHttpServer()).get('/spaces/stream');
    expect(response.status).toBe(200);
    expect(streamed).toEqual([['stream'], ['stream'], ['stream']]);
    expect(app.get(SpaceLockService).held()).toEqual([]);
  });

  it('a function key reads the ExecutionContext, and the handler runs holding that key', async () => {
    locksForStream = app.get(SpaceLockService);
    const response = await request(app.getHttpServer()).get('/spaces/computed');
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ key: 'computed:computed', held: ['computed:computed'] });
    expect(app.get(SpaceLockService).held()).toEqual([]);
  });
});

/** An HTTP app of `module` on Express or Fastify, initialised and ready for requests. */
async function httpApp(module: Type<unknown>, platform: 'express' | 'fastify'): Promise<INestApplication> {
  const app =
    platform === 'fastify'
      ? await NestFactory.create<NestFastifyApplication>(module, new FastifyAdapter(), { logger: false })
      : await NestFactory.create(module, { logger: false });
  await app.init();
  if (platform === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  return app;
}

describe.each(['express', 'fastify'] as const)('@WithLock routes lock in their trampoline, without an interceptor (%s)', (platform) => {
  @Controller('reports')
  @WithLock('reports:{params.id}')
  class ReportsController {
    @Get(':id')
    async build(@Param('id') id: string, @CurrentLock() lock: HeldLock): Promise<object> {
      await gates.get(id)?.open;
      return this.describe(id, lock);
    }

    /** Not a route: the class-level lock does not make it a handler. */
    describe(id: string, lock: HeldLock): object {
      return { id, key: lock.key };
    }

    @Get(':id/summary')
    @WithLock('summary:{params.id}', { onLocked: 'skip' })
    async summary(@Param('id') id: string, @CurrentLock() lock: HeldLock): Promise<object> {
      await gates.get(`summary:${id}`)?.open;
      return { key: lock.key };
    }
  }

  /** A hybrid app's controller: its route locks in its trampoline, its RPC handler from its arguments. */
  @Controller('mixed')
  @WithLock('mixed')
  class MixedController {
    @Get()
    route(): object {
      return { ok: true };
    }

    @SetMetadata('microservices:pattern', [{ cmd: 'mixed' }])
    rpc(): object {
      return { ok: true };
    }
  }

  /** A new instance per request: the lock must still hold across instances. */
  @Controller({ path: 'scoped', scope: Scope.REQUEST })
  class ScopedController {
    @Get(':id')
    @WithLock('scoped:{params.id}')
    async get(@Param('id') id: string): Promise<object> {
      await gates.get(`scoped:${id}`)?.open;
      return { id };
    }
  }

  @Controller('open')
  class OpenController {
    @Get()
    unlocked(@CurrentLock() lock: HeldLock | undefined): object {
      return { lock: lock === undefined ? 'none' : 'some' };
    }
  }

  let app: INestApplication;
  beforeAll(async () => {
    @Module({ imports: [LockModule.forRoot()], controllers: [ReportsController, OpenController, SpacesController, MixedController, ScopedController] })
    class ReportsModule {}
    app = await httpApp(ReportsModule, platform);
  });
  afterAll(() => app.close());
  beforeEach(() => gates.clear());

  it('class-level @WithLock locks every route; a method-level one overrides it', async () => {
    const gate = new Gate();
    gates.set('r1', gate);
    const server = app.getHttpServer();
    const first = request(server).get('/reports/r1').then((response) => response);
    await until(() => app.get(SpaceLockService).held().length === 1);
    const second = await request(server).get('/reports/r1');
    expect(second.status).toBe(503);
    expect(second.body).toMatchObject({ key: 'reports:r1' });
    expect((await request(server).get('/reports/r2')).status).toBe(200);
    gate.release();
    expect((await first).body).toEqual({ id: 'r1', key: 'reports:r1' });

    const summaryGate = new Gate();
    gates.set('summary:r1', summaryGate);
    const summary = request(server).get('/reports/r1/summary').then((response) => response);
    await until(() => app.get(SpaceLockService).held().length === 1);
    expect((await request(server).get('/reports/r1/summary')).body).toEqual({ skipped: 'in-progress' });
    // The override's key, not the class's: the class key stays free meanwhile.
    expect((await request(server).get('/reports/r1')).status).toBe(200);
    summaryGate.release();
    expect((await summary).body).toEqual({ key: 'summary:r1' });
    expect(app.get(SpaceLockService).held()).toEqual([]);
  });

  it('locks the routes of request-scoped controllers too', async () => {
    const gate = new Gate();
    gates.set('scoped:s1', gate);
    const server = app.getHttpServer();
    const first = request(server).get('/scoped/s1').then((response) => response);
    await until(() => app.get(SpaceLockService).held().length === 1);
    expect((await request(server).get('/scoped/s1')).status).toBe(503);
    expect((await request(server).get('/scoped/s2')).status).toBe(200);
    gate.release();
    expect((await first).status).toBe(200);
  });

  it('@WithLock registers no interceptor anywhere; a class-level lock covers routes and RPC handlers; @CurrentLock elsewhere is undefined', async () => {
    const targets = [ReportsController, ReportsController.prototype.build, ReportsController.prototype.summary, SpacesController.prototype.sync];
    for (const target of [...targets, MixedController, MixedController.prototype.rpc]) {
      expect((Reflect.getMetadata(INTERCEPTORS_METADATA, target) as unknown[] | undefined) ?? []).toEqual([]);
    }
    expect((await request(app.getHttpServer()).get('/mixed')).status).toBe(200);
    // The RPC handler locks from its arguments: a call while the key is held is refused.
    const locks = app.get(SpaceLockService);
    await locks.withSpaceLock('mixed', async () => {
      await expect(app.get(MixedController).rpc()).rejects.toBeInstanceOf(LockHeldError);
    });
    await expect(app.get(MixedController).rpc()).resolves.toEqual({ ok: true });
    expect((await request(app.getHttpServer()).get('/open')).body).toEqual({ lock: 'none' });
  });

  it('the interceptor option swaps the protocol mapping; a class that is no LockInterceptor fails at bootstrap', async () => {
    class TooManyRequests extends LockInterceptor {
      protected override lockedException(context: ExecutionContext, error: LockHeldError): unknown {
        this.setHeader(context, 'X-Lock-Key', error.key);
        return new HttpException({ busy: error.key }, HttpStatus.TOO_MANY_REQUESTS);
      }
    }
    @Module({ imports: [LockModule.forRoot({ interceptor: TooManyRequests })], controllers: [ReportsController] })
    class CustomModule {}
    const custom = await httpApp(CustomModule, platform);
    try {
      const gate = new Gate();
      gates.set(`c1-${platform}`, gate);
      const first = request(custom.getHttpServer()).get(`/reports/c1-${platform}`).then((response) => response);
      await until(() => custom.get(SpaceLockService).held().length === 1);
      const busy = await request(custom.getHttpServer()).get(`/reports/c1-${platform}`);
      expect(busy.status).toBe(429);
      expect(busy.headers['x-lock-key']).toBe(`reports:c1-${platform}`);
      expect(busy.body).toEqual({ busy: `reports:c1-${platform}` });
      gate.release();
      expect((await first).status).toBe(200);
    } finally {
      await custom.close();
    }
    class NotAnInterceptor {}
    @Module({ imports: [LockModule.forRoot({ interceptor: NotAnInterceptor as never })], controllers: [ReportsController] })
    class WrongModule {}
    await expect(NestFactory.create(WrongModule, { logger: false, abortOnError: false })).rejects.toThrow(/must extend LockInterceptor/);
  });

  it('a custom interceptor is built by Nest\'s injector: it may inject its own dependencies', async () => {
    const BUSY_STATUS = Symbol('BUSY_STATUS');
    @Module({ providers: [{ provide: BUSY_STATUS, useValue: HttpStatus.TOO_MANY_REQUESTS }], exports: [BUSY_STATUS] })
    class StatusModule {}
    @Injectable()
    class Configured extends LockInterceptor {
      constructor(
        @Inject(Reflector) reflector: Reflector,
        @Inject(SpaceLockService) locks: SpaceLockService,
        @Inject(BUSY_STATUS) private readonly busyStatus: number,
      ) {
        super(reflector, locks);
      }

      protected override lockedException(_context: ExecutionContext, error: LockHeldError): unknown {
        return new HttpException({ busy: error.key }, this.busyStatus);
      }
    }
    @Module({
      imports: [LockModule.forRootAsync({ imports: [StatusModule], useFactory: () => ({ interceptor: Configured }) })],
      controllers: [ReportsController],
    })
    class InjectedModule {}
    const injected = await NestFactory.create(InjectedModule, { logger: false });
    await injected.init();
    try {
      expect(injected.get(LockInterceptor)).toBeInstanceOf(Configured);
      const gate = new Gate();
      gates.set('i1', gate);
      const first = request(injected.getHttpServer()).get('/reports/i1').then((response) => response);
      await until(() => injected.get(SpaceLockService).held().length === 1);
      const busy = await request(injected.getHttpServer()).get('/reports/i1');
      expect(busy.status).toBe(429);
      expect(busy.body).toEqual({ busy: 'reports:i1' });
      gate.release();
      expect((await first).status).toBe(200);
    } finally {
      await injected.close();
    }
  });

  it('a handler called from code (not through the router) runs unlocked and gets its own arguments', async () => {
    const controller = app.get(ReportsController);
    const fake = { key: 'given' } as HeldLock;
    await expect(controller.build('direct', fake)).resolves.toEqual({ id: 'direct', key: 'given' });
  });
});

/** Another replica (a shared memory store) holds the lock; routes of this app meet it over HTTP. */
describe.each(['express', 'fastify'] as const)('@WithLock over HTTP against a holder in another replica (%s)', (platform) => {
  const guardSaw: string[][] = [];

  @Injectable()
  class HeaderGuard implements CanActivate {
    constructor(private readonly locks: SpaceLockService) {}
    canActivate(context: ExecutionContext): boolean {
      // What this app holds while the guard decides: the route's own lock must not be among it.
      guardSaw.push(this.locks.held().map((lock) => lock.key));
      return context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-allow'] === 'yes';
    }
  }

  @Controller('busy')
  class BusyController {
    @Get('throw/:id')
    @WithLock('busy:{params.id}')
    thrown(): object {
      return { ran: true };
    }

    @Get('wait/:id')
    @WithLock('busy:{params.id}', { waitMs: 150 })
    waited(): object {
      return { ran: true };
    }

    @Get('skip/:id')
    @WithLock('busy:{params.id}', { onLocked: 'skip' })
    skipped(): object {
      return { ran: true };
    }

    @Get('guarded/:id')
    @UseGuards(HeaderGuard)
    @WithLock('busy:{params.id}')
    guarded(): object {
      return { ran: true };
    }
  }

  const store = new MemoryLockStore();
  let app: INestApplication;
  let holderApp: INestApplication;
  let holder: SpaceLockService;
  beforeAll(async () => {
    @Module({ imports: [LockModule.forRoot({ memory: { store } })], controllers: [BusyController], providers: [HeaderGuard] })
    class BusyModule {}
    app = await httpApp(BusyModule, platform);
    holderApp = await NestFactory.create(LockModule.forRoot({ memory: { store } }), { logger: false });
    await holderApp.init();
    holder = holderApp.get(SpaceLockService);
  });
  afterAll(async () => {
    await app.close();
    await holderApp.close();
  });

  it("Retry-After is the holder's remaining lease in whole seconds", async () => {
    const lock = await holder.acquire('busy:retry', { ttlMs: 7_500 });
    const before = (await holder.inspect('busy:retry'))!.expiresInMs!;
    const response = await request(app.getHttpServer()).get('/busy/throw/retry');
    const after = (await holder.inspect('busy:retry'))!.expiresInMs!;
    expect(response.status).toBe(503);
    const retryAfter = Number(response.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(Math.ceil(after / 1_000));
    expect(retryAfter).toBeLessThanOrEqual(Math.ceil(before / 1_000));
    expect(response.body).toMatchObject({ statusCode: 503, key: 'busy:retry', retryAfterSeconds: retryAfter });
    await lock.release();
  });

  it('waitMs running out (LockTimeoutError) answers 503 with Retry-After, after waiting', async () => {
    const lock = await holder.acquire('busy:timeout', { ttlMs: 20_000 });
    const started = performance.now();
    const response = await request(app.getHttpServer()).get('/busy/wait/timeout');
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(response.status).toBe(503);
    expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(19);
    expect(response.body).toMatchObject({ statusCode: 503, key: 'busy:timeout' });
    expect(response.body).not.toHaveProperty('ran');
    await lock.release();
    expect((await request(app.getHttpServer()).get('/busy/wait/timeout')).body).toEqual({ ran: true });
  });

  it("onLocked: 'skip' answers { skipped: 'lock-held' } with the route's status", async () => {
    const lock = await holder.acquire('busy:skip');
    const response = await request(app.getHttpServer()).get('/busy/skip/skip');
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ skipped: 'lock-held' });
    await lock.release();
    expect((await request(app.getHttpServer()).get('/busy/skip/skip')).body).toEqual({ ran: true });
  });

  it('guards run before the lock is asked for', async () => {
    guardSaw.length = 0;
    const lock = await holder.acquire('busy:guarded');
    // Held elsewhere: a refused request is told 403 by its guard, never 503 by the lock.
    expect((await request(app.getHttpServer()).get('/busy/guarded/guarded')).status).toBe(403);
    expect((await request(app.getHttpServer()).get('/busy/guarded/guarded').set('x-allow', 'yes')).status).toBe(503);
    await lock.release();
    expect((await request(app.getHttpServer()).get('/busy/guarded/guarded').set('x-allow', 'yes')).body).toEqual({ ran: true });
    // The guard decided each time before this app held the route's lock.
    expect(guardSaw).toEqual([[], [], []]);
    expect(await holder.inspect('busy:guarded')).toBeNull();
  });
});

describe('@WithLock on provider methods', () => {
  let app: INestApplication;
  let job: NightlyJob;
  beforeAll(async () => {
    app = await NestFactory.create(appModule(), { logger: false });
    await app.init();
    job = app.get(NightlyJob);
  });
  afterAll(() => app.close());

  it("skip mode (providers' default) returns undefined while held and runs once free", async () => {
    const gate = new Gate();
    const running = job.run({ region: 'eu' }, gate);
    await until(() => job.runs === 1);
    await expect(job.run({ region: 'eu' })).resolves.toBeUndefined();
    await expect(job.run({ region: 'us' })).resolves.toBe('done us');
    gate.release();
    await expect(running).resolves.toBe('done eu');
    await expect(job.run({ region: 'eu' })).resolves.toBe('done eu');
    expect(job.runs).toBe(3);
  });

  it('throw mode throws LockHeldError', async () => {
    const gate = new Gate();
    const running = job.strict('x', gate);
    await expect(job.strict('x')).rejects.toBeInstanceOf(LockHeldError);
    gate.release();
    await expect(running).resolves.toBe('x');
  });

  it('a missing argument value is an InvalidLockKeyError', async () => {
    await expect(job.run({} as { region: string })).rejects.toBeInstanceOf(InvalidLockKeyError);
  });

  it('route and other metadata on decorated methods survive', () => {
    const reflector = new Reflector();
    const handler = SpacesController.prototype.sync;
    expect(Reflect.getMetadata(PATH_METADATA, handler)).toBe(':spaceId/sync');
    expect(Reflect.getMetadata(METHOD_METADATA, handler)).toBeDefined();
    expect(reflector.get('nestjs-lock:with-lock', handler)).toBeDefined();
    expect(Reflect.getMetadata('nestjs-lock:with-lock', NightlyJob.prototype.run)).toBeDefined();
    expect(NightlyJob.prototype.run.name).toBe('run');
  });

  it('bad templates and options fail at decoration with a typed error', () => {
    expect(() => WithLock('a:{params.x')).toThrow(InvalidLockKeyError);
    expect(() => WithLock('a:{}')).toThrow(InvalidLockKeyError);
    expect(() => WithLock([])).toThrow(LockOptionsError);
    expect(() => WithLock([])).toThrow(/at least one key/);
    expect(() => WithLock('a', { ttlMs: -1 })).toThrow(LockOptionsError);
    expect(() => WithLock('a', { ttlMs: -1 })).toThrow(/ttlMs/);
  });

  it('the module can be closed twice: the second close is a no-op, the first released everything', async () => {
    const other = await NestFactory.create(appModule(), { logger: false });
    await other.init();
    const otherJob = other.get(NightlyJob);
    const gate = new Gate();
    const running = otherJob.run({ region: 'close-twice' }, gate);
    await until(() => other.get(SpaceLockService).held().length === 1);
    const [lock] = other.get(SpaceLockService).held();
    await other.close();
    await expect(other.close()).resolves.toBeUndefined();
    expect(other.get(SpaceLockService).held()).toEqual([]);
    gate.release();
    await expect(running).resolves.toBe('done close-twice');
    expect(lock.key).toBe('nightly:close-twice');
  });
});

describe('@WithLock misuse and scopes', () => {
  it('locks methods of transient providers too', async () => {
    @Injectable({ scope: Scope.TRANSIENT })
    class TransientJob {
      @WithLock('transient')
      async run(gate?: Gate): Promise<string> {
        await gate?.open;
        return 'ran';
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot()], providers: [TransientJob] }).compile();
    await moduleRef.init();
    const [first, second] = await Promise.all([moduleRef.resolve(TransientJob), moduleRef.resolve(TransientJob)]);
    expect(first).not.toBe(second);
    const gate = new Gate();
    const running = first.run(gate);
    await expect(second.run()).resolves.toBeUndefined();
    gate.release();
    await expect(running).resolves.toBe('ran');
    await moduleRef.close();
  });

  it('shared mode or limit on a backend without it, and class-level @WithLock on a provider, fail at bootstrap', async () => {
    /** A backend that has neither readers-writer locks nor semaphores. */
    class PlainOnlyBackend extends MemoryLockBackend {
      override readonly capabilities = { shared: false, limit: false, inProcess: true };
    }
    @Injectable()
    class SharedJob {
      @WithLock('s', { mode: 'shared' })
      async run(): Promise<void> {}
    }
    @Injectable()
    class LimitedJob {
      @WithLock('s', { limit: 3 })
      async run(): Promise<void> {}
    }
    @Injectable()
    @WithLock('whole-class')
    class ClassJob {}
    for (const [provider, error] of [
      [SharedJob, /shared lock/],
      [LimitedJob, /limit 3.*no semaphores/],
      [ClassJob, /only applies to controllers/],
    ] as const) {
      const moduleRef = await Test.createTestingModule({
        imports: [LockModule.forRoot({ backend: new PlainOnlyBackend() })],
        providers: [provider],
      }).compile();
      await expect(moduleRef.init()).rejects.toThrow(error);
    }
  });
});

describe('LockModule wiring', () => {
  it('forRootAsync builds the options from a factory and exposes the backend token', async () => {
    const backend = new MemoryLockBackend();
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRootAsync({ useFactory: () => ({ backend, ttlMs: 5_000 }) })],
    }).compile();
    await moduleRef.init();
    expect(moduleRef.get(LockBackend)).toBe(backend);
    const lock = await moduleRef.get(SpaceLockService).acquire('async');
    expect((await backend.inspect('lock:async'))[0]).toMatchObject({ ttlMs: 5_000 });
    await moduleRef.close();
    expect(lock.signal.aborted).toBe(true);
    expect(await backend.inspect('lock:async')).toEqual([]);
  });

  it('forRootAsync with useClass', async () => {
    class Options {
      createLockOptions(): LockModuleOptions {
        return { keyPrefix: 'cls:' };
      }
    }
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRootAsync({ useClass: Options })] }).compile();
    await moduleRef.init();
    const lock = await moduleRef.get(SpaceLockService).acquire('x');
    expect(await moduleRef.get<LockBackend>(LockBackend).inspect('cls:x')).toHaveLength(1);
    await lock.release();
    await moduleRef.close();
  });

  it('bad module options fail at bootstrap with a typed error', async () => {
    expect(() => LockModule.forRoot({ ttlMs: 100, heartbeatMs: 200 })).toThrow(/heartbeatMs/);
    await expect(
      Test.createTestingModule({
        imports: [LockModule.forRootAsync({ useFactory: () => ({ backend: 'nope' as 'memory' }) })],
      }).compile(),
    ).rejects.toThrow(/Unknown lock backend "nope"/);
  });

  it('a controller template with an unknown root fails at bootstrap', async () => {
    @Controller('bad')
    class BadController {
      @Get()
      @WithLock('x:{param.id}')
      handler(): void {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [LockModule.forRoot()],
      controllers: [BadController],
    }).compile();
    await expect(moduleRef.init()).rejects.toThrow(/must start with params, query, headers, body, user/);
  });
});
