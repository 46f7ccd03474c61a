import { Controller, Get, Module, Param, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import request from 'supertest';
import { MessagePattern } from '@nestjs/microservices';
import { Observable, lastValueFrom } from 'rxjs';
import { Gate } from '../support/gate';
import { Logger } from '@nestjs/common';
import { CompiledKeyTemplate, MissingLockKeyValueError } from '../../lib/lock-key.template';
import { Candidate, type ElectionLocks } from '../../lib/leader/candidate';
import type { HeldLock } from '../../lib/held-lock.interface';
import { NestFactory } from '@nestjs/core';
import { performance } from 'node:perf_hooks';
import { LeaderOnly, WithLock, LockModule, MemoryLockStore, SpaceLockService } from '../../lib';
import { until } from '../support/redis-server';
import { lockApp, type LockApp } from '../redis/redis-test-app';

/** A job class provided by a factory or as a value, not by `useClass`: its wrapper's metatype is no class. */
class FactoryJobs {
  runs = 0;

  @LeaderOnly('edge-factory')
  tick(): void {
    this.runs += 1;
  }
}

describe('@LeaderOnly on providers not registered by class', () => {
  for (const kind of ['useFactory', 'useValue'] as const) {
    it(`runs a ${kind} provider's @LeaderOnly method only on the leader`, async () => {
      const store = new MemoryLockStore();
      const apps: INestApplicationContext[] = [];
      try {
        for (let i = 0; i < 2; i++) {
          const provider =
            kind === 'useFactory' ? { provide: 'JOBS', useFactory: () => new FactoryJobs() } : { provide: 'JOBS', useValue: new FactoryJobs() };
          @Module({ imports: [LockModule.forRoot({ backend: 'memory', memory: { store } })], providers: [provider] })
          class AppModule {}
          const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
          await app.init();
          apps.push(app);
        }
        const locks = apps.map((app) => app.get(SpaceLockService));
        // The name is campaigned for from bootstrap, as for a useClass provider: someone leads it.
        await until(async () => (await locks[0].leader('edge-factory')) !== null, 1_000, 'a leader elected').catch(() => undefined);
        const jobs = apps.map((app) => app.get<FactoryJobs>('JOBS'));
        for (const job of jobs) for (let i = 0; i < 3; i++) job.tick();
        // At most one replica (the leader) may run it.
        expect(jobs.filter((job) => job.runs > 0).length).toBeLessThanOrEqual(1);
      } finally {
        await Promise.all(apps.map((app) => app.close()));
      }
    });
  }
});

describe('campaign callbacks stay balanced when a callback adds a listener', () => {
  const apps: LockApp[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map(({ app }) => app.close()));
  });

  it('a listener added from onElected gets onElected once, not twice in a row', async () => {
    const replica = await lockApp({ backend: 'memory' });
    apps.push(replica);
    const calls: string[] = [];
    replica.locks.campaign('edge-nested', {
      onElected: () => {
        replica.locks.campaign('edge-nested', { onElected: () => calls.push('elected'), onRevoked: () => calls.push('revoked') });
      },
    });
    await until(() => calls.length > 0, 2_000, 'the nested listener elected');
    await new Promise((resolve) => setImmediate(resolve));
    await replica.locks.campaign('edge-nested').resign();
    expect(calls).toEqual(['elected', 'revoked']);
  });

  it('a listener added from onRevoked (lease lost) is not revoked without being elected', async () => {
    const replica = await lockApp({ backend: 'memory', ttlMs: 300 });
    apps.push(replica);
    const calls: string[] = [];
    const handle = replica.locks.campaign('edge-nested-lost', {
      onRevoked: () => {
        replica.locks.campaign('edge-nested-lost', { onElected: () => calls.push('elected'), onRevoked: () => calls.push('revoked') });
      },
    });
    await until(() => handle.isLeader, 2_000, 'elected');
    // A synchronous pause past the lease (as in leader-election.spec): the next isLeader read ends the term.
    const resumeAt = performance.now() + 400;
    while (performance.now() < resumeAt) {
      // busy
    }
    expect(handle.isLeader).toBe(false);
    expect(calls).toEqual([]);
  });
});

@Controller('r4rooms')
class RoomsController {
  runs = 0;

  @Get(':id')
  @WithLock('room:{params.id}')
  join(@Param('id') id: string): { id: string } {
    this.runs += 1;
    return { id };
  }
}

describe('a controller class also listed as a provider', () => {
  it('boots, and its @WithLock route with a {params.*} key locks as a route', async () => {
    @Module({ imports: [LockModule.forRoot({ backend: 'memory' })], controllers: [RoomsController], providers: [RoomsController] })
    class BothModule {}
    let app: INestApplication | undefined;
    try {
      app = await NestFactory.create(BothModule, { logger: false, abortOnError: false });
      await app.init();
      const response = await request(app.getHttpServer()).get('/r4rooms/7');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ id: '7' });
    } finally {
      await app?.close();
    }
  });
});

/** A streaming RPC handler: its work runs when the transport subscribes to the returned Observable. */
@Controller()
class StreamingConsumer {
  active = 0;
  maxActive = 0;
  gate = new Gate();

  @MessagePattern('r4.stream')
  @WithLock('r4stream:{0.room}')
  stream(_body: { room: string }): Observable<number> {
    return new Observable<number>((subscriber) => {
      this.active += 1;
      this.maxActive = Math.max(this.maxActive, this.active);
      void this.gate.open.then(() => {
        this.active -= 1;
        subscriber.next(1);
        subscriber.complete();
      });
    });
  }
}

describe('a microservice handler returning an Observable', () => {
  it('keeps its lock while the stream runs: a second call for the key is refused, not run at once', async () => {
    @Module({ imports: [LockModule.forRoot({ backend: 'memory' })], controllers: [StreamingConsumer] })
    class StreamModule {}
    const app = await NestFactory.createApplicationContext(StreamModule, { logger: false });
    try {
      await app.init();
      const consumer = app.get(StreamingConsumer);
      // As Nest's RPC server does: await the handler's result, subscribe to the Observable.
      const first = lastValueFrom((await consumer.stream({ room: 'a' })) as Observable<number>);
      const second = (async () => lastValueFrom((await consumer.stream({ room: 'a' })) as Observable<number>))();
      const secondOutcome = second.then(
        () => 'ran',
        (error: unknown) => (error as Error).name,
      );
      await new Promise((resolve) => setImmediate(resolve));
      consumer.gate.release();
      await first;
      expect(consumer.maxActive).toBe(1);
      expect(await secondOutcome).toBe('LockHeldError');
    } finally {
      await app.close();
    }
  });
});

describe('a candidate granted a lease that is already lost', () => {
  it('does not lead on it and campaigns again (it waited on an abort that had already happened)', async () => {
    let acquires = 0;
    const lost = new AbortController();
    lost.abort(new Error('lease lost'));
    const second = new Gate();
    const locks: ElectionLocks = {
      whenReady: () => Promise.resolve(),
      inspect: () => Promise.resolve(null),
      isHeldNow: (lock) => !lock.signal.aborted,
      acquire: () => {
        acquires += 1;
        if (acquires === 1) {
          return Promise.resolve({ signal: lost.signal, fencingToken: 1, release: () => Promise.resolve() } as unknown as HeldLock);
        }
        second.release();
        return new Promise<HeldLock>(() => undefined); // waits (as for the lock) until the test ends
      },
    };
    const elected: number[] = [];
    const revoked: number[] = [];
    const candidate = new Candidate(locks, 'edge-lost', 'leader:edge-lost', undefined, new Logger('test'));
    candidate.listen({ onElected: ({ term }) => elected.push(term), onRevoked: ({ term }) => revoked.push(term) });
    await Promise.race([second.open, new Promise((resolve) => setTimeout(resolve, 500))]);
    expect(candidate.isLeader).toBe(false);
    expect(acquires).toBe(2);
    expect(elected.length).toBe(revoked.length);
    void candidate.resign();
  });
});

describe('key templates and non-finite numbers', () => {
  it('refuses NaN and Infinity with a typed error instead of locking on "NaN" / "Infinity"', () => {
    const template = new CompiledKeyTemplate('order:{0.id}');
    expect(() => template.render({ '0': { id: Number('abc') } })).toThrow(MissingLockKeyValueError);
    expect(() => template.render({ '0': { id: Infinity } })).toThrow(MissingLockKeyValueError);
    expect(template.render({ '0': { id: 42 } })).toBe('order:42');
  });
});
