import { Controller, Injectable, Module, Post } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { NestFactory } from '@nestjs/core';
import { EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { firstValueFrom, take, toArray } from 'rxjs';
import { LOCK_EVENT_TYPES, LockModule, SpaceLockService, WithLock, type LockEvent, type LockEventType } from '../../lib';
import { lockApp, uniquePrefix, type LockApp } from '../redis/redis-test-app';
import { RedisServer, until } from '../support/redis-server';
import { releaseSubscribed } from './observability-support';


/** Every type any test of this file heard (checked last: every kind is covered). */
const seenTypes = new Set<LockEventType>();

/** Every event of `app`, kept in order; `of(type)` filters. */
function recorder(locks: SpaceLockService): { events: LockEvent[]; of: <T extends LockEventType>(type: T) => Extract<LockEvent, { type: T }>[]; stop: () => void } {
  const events: LockEvent[] = [];
  const stop = locks.onLockEvent((event) => {
    events.push(event);
    seenTypes.add(event.type);
  });
  return { events, of: (type) => events.filter((event) => event.type === type) as never, stop };
}

describe('lock events (two replicas on a private redis-server)', () => {
  const prefix = uniquePrefix('events');
  let server: RedisServer;
  let a: LockApp;
  let b: LockApp;

  beforeAll(async () => {
    server = await RedisServer.start();
    a = await lockApp({ backend: 'redis', keyPrefix: prefix, ttlMs: 5_000, redis: { url: server.url } });
    b = await lockApp({ backend: 'redis', keyPrefix: prefix, ttlMs: 5_000, redis: { url: server.url } });
  });
  afterAll(async () => {
    await a?.app.close();
    await b?.app.close();
    await server?.destroy();
  });

  it('acquired and released, with the bounded name; nothing after unsubscribing', async () => {
    const record = recorder(a.locks);
    await a.locks.withSpaceLock('report:42', () => 'done', { name: 'report' });
    await a.locks.withSpaceLock('report:43', () => 'done');
    record.stop();
    await a.locks.withSpaceLock('report:44', () => 'unheard');
    expect(record.events.map((event) => event.type)).toEqual(['acquired', 'released', 'acquired', 'released']);
    const [named, unnamed] = record.of('acquired');
    expect(named).toMatchObject({ key: 'report:42', keys: ['report:42'], name: 'report', mode: 'exclusive', backend: 'redis', waited: false });
    expect(named.fencingToken).toBeGreaterThan(0);
    expect(unnamed).toMatchObject({ key: 'report:43', name: 'unnamed' });
    expect(unnamed.durationMs).toBeGreaterThanOrEqual(0);
    expect(record.of('released')[0]).toMatchObject({ key: 'report:42', name: 'report', fencingToken: named.fencingToken });
  });

  it('a lease taken before anybody listened is released under its own name', async () => {
    const lease = await a.locks.acquire('early', { name: 'early-bird' });
    const record = recorder(a.locks);
    await lease.release();
    record.stop();
    expect(record.events).toEqual([expect.objectContaining({ type: 'released', key: 'early', name: 'early-bird' })]);
  });

  it('contended without a wait: missed with outcome held', async () => {
    const record = recorder(b.locks);
    const held = await a.locks.acquire('busy', { name: 'busy' });
    expect(await b.locks.withSpaceLock('busy', () => 'never', { name: 'busy' })).toEqual({ skipped: 'lock-held' });
    await held.release();
    record.stop();
    expect(record.events.map((event) => event.type)).toEqual(['contended', 'missed']);
    expect(record.of('contended')[0]).toMatchObject({ waiting: false, name: 'busy' });
    expect(record.of('missed')[0]).toMatchObject({ outcome: 'held', reason: 'lock-held' });
  });

  it('a wait that runs out: contended (waiting), waited and missed with outcome timeout', async () => {
    const record = recorder(b.locks);
    const held = await a.locks.acquire('slow');
    expect(await b.locks.tryAcquire('slow', { waitMs: 150, name: 'slow' })).toBeNull();
    await held.release();
    record.stop();
    expect(record.events.map((event) => event.type)).toEqual(['contended', 'waited', 'missed']);
    expect(record.of('waited')[0]).toMatchObject({ outcome: 'timeout' });
    expect(record.of('waited')[0].durationMs).toBeGreaterThanOrEqual(100);
    expect(record.of('missed')[0]).toMatchObject({ outcome: 'timeout' });
    const ids = new Set(record.events.map((event) => (event as { attemptId: number }).attemptId));
    expect(ids.size).toBe(1);
  });

  it('handed over by the store: a waiter of another replica gets the lease passed on release', async () => {
    const record = recorder(b.locks);
    const held = await a.locks.acquire('queue');
    const waiting = b.locks.acquire('queue', { waitMs: 5_000, name: 'queue' });
    await until(() => record.of('contended').length === 1, 5_000, 'B queued');
    // The release passes the lease to B only over B's subscription: wait until it is up.
    await releaseSubscribed(server.url, `${prefix}queue`);
    await held.release();
    const lease = await waiting;
    await lease.release();
    record.stop();
    expect(record.events.map((event) => event.type)).toEqual(['contended', 'handed-over', 'waited', 'acquired', 'released']);
    expect(record.of('handed-over')[0]).toMatchObject({ via: 'store', name: 'queue' });
    expect(record.of('waited')[0]).toMatchObject({ outcome: 'acquired' });
    expect(record.of('acquired')[0]).toMatchObject({ waited: true, fencingToken: lease.fencingToken });
  });

  it('handed over locally: the next caller of this process gets the lease straight from its holder', async () => {
    const record = recorder(a.locks);
    const first = await a.locks.acquire('local', { name: 'local' });
    const second = a.locks.acquire('local', { waitMs: 5_000, name: 'local' });
    await until(() => record.of('contended').length === 1, 5_000, 'second caller queued');
    await first.release();
    await (await second).release();
    record.stop();
    expect(record.events.map((event) => event.type)).toEqual(['acquired', 'contended', 'released', 'handed-over', 'waited', 'acquired', 'released']);
    expect(record.of('handed-over')[0]).toMatchObject({ via: 'local' });
  });

  it('reaped by an operator, then lost by its holder', async () => {
    const recordA = recorder(a.locks);
    const recordB = recorder(b.locks);
    const lease = await a.locks.acquire('reaped', { name: 'reaped' });
    await b.locks.forceRelease('reaped', { reason: 'stuck job', caller: 'ops' });
    expect(await lease.extend()).toBe(false);
    recordA.stop();
    recordB.stop();
    expect(recordB.of('reaped')).toEqual([{ type: 'reaped', key: 'reaped', backend: 'redis', reason: 'stuck job', caller: 'ops', outcome: 'released' }]);
    expect(recordA.of('lost')).toEqual([{ type: 'lost', key: 'reaped', name: 'reaped', mode: 'exclusive', backend: 'redis', fencingToken: lease.fencingToken, reason: 'taken-over' }]);
    // A lost lease's release is no second end of it.
    await lease.release();
    expect(recordA.of('released')).toEqual([]);
  });

  it('locks.events is an Observable of the same stream; a throwing listener is logged, not fatal', async () => {
    const stop = a.locks.onLockEvent(() => {
      throw new Error('listener bug');
    });
    const two = firstValueFrom(a.locks.events.pipe(take(2), toArray()));
    expect(await a.locks.withSpaceLock('observed', () => 7)).toBe(7);
    stop();
    expect((await two).map((event) => event.type)).toEqual(['acquired', 'released']);
  });

  it('a lock set taken in one store call is one acquisition', async () => {
    const record = recorder(a.locks);
    await a.locks.withSpaceLocks(['set:b', 'set:a'], () => undefined, { name: 'pair' });
    record.stop();
    expect(record.of('acquired')).toHaveLength(1);
    expect(record.of('acquired')[0]).toMatchObject({ key: 'set:a', keys: ['set:a', 'set:b'], name: 'pair' });
    expect(record.of('released').map((event) => event.key).sort()).toEqual(['set:a', 'set:b']);
  });

  it('rejects a bad name', async () => {
    await expect(a.locks.withSpaceLock('x', () => 1, { name: '' })).rejects.toThrow(/name must be/);
    await expect(a.locks.withSpaceLock('x', () => 1, { name: 'a\nb' })).rejects.toThrow(/name must be/);
  });
});

describe('lock events when the store stops answering (private redis-server, SIGSTOP)', () => {
  let server: RedisServer;
  let app: LockApp;

  beforeAll(async () => {
    server = await RedisServer.start();
    app = await lockApp({ backend: 'redis', ttlMs: 3_000, heartbeatMs: 100, backendTimeoutMs: 200, redis: { url: server.url } });
  });
  afterAll(async () => {
    server?.resume();
    await app?.app.close();
    await server?.destroy();
  });

  it('heartbeat-failed while paused, failed for an acquisition, and the store answers again after', async () => {
    const record = recorder(app.locks);
    const lease = await app.locks.acquire('beating', { name: 'beating' });
    server.pause();
    try {
      await until(() => record.of('heartbeat-failed').length >= 1, 5_000, 'a failed heartbeat');
      await expect(app.locks.acquire('other', { name: 'other' })).rejects.toThrow(/timed out/);
    } finally {
      server.resume();
    }
    await lease.release();
    record.stop();
    expect(record.of('heartbeat-failed')[0]).toMatchObject({ backend: 'redis', leases: 1 });
    expect(record.of('failed')).toHaveLength(1);
    expect(record.of('failed')[0]).toMatchObject({ key: 'other', name: 'other' });
  });
});

describe('@nestjs/event-emitter bridge', () => {
  @Injectable()
  class Listener {
    readonly heard: string[] = [];
    @OnEvent('lock.*')
    onLock(event: LockEvent): void {
      this.heard.push(`${event.type}:${'key' in event ? event.key : ''}`);
    }
  }

  @Module({ imports: [EventEmitterModule.forRoot({ wildcard: true }), LockModule.forRoot({ keyPrefix: uniquePrefix('bridge') })], providers: [Listener] })
  class BridgedApp {}

  it('emits every lock event as lock.<type> when the app has EventEmitterModule', async () => {
    const app = await NestFactory.createApplicationContext(BridgedApp, { logger: false });
    try {
      await app.get(SpaceLockService).withSpaceLock('bridged', () => undefined);
      expect(app.get(Listener).heard).toEqual(['acquired:bridged', 'released:bridged']);
    } finally {
      await app.close();
    }
  });

  it('stays silent (no listener, no cost) without it', async () => {
    const app = await NestFactory.createApplicationContext(LockModule.forRoot({ keyPrefix: uniquePrefix('unbridged') }), { logger: false });
    try {
      const events = (app.get(SpaceLockService) as unknown as { lockEvents: { active: boolean } }).lockEvents;
      expect(events.active).toBe(false);
    } finally {
      await app.close();
    }
  });
});

describe('@WithLock names its lock by its template', () => {
  @Controller('spaces')
  class SpacesController {
    @Post(':spaceId/sync')
    @WithLock('space:{params.spaceId}')
    sync(): string {
      return 'synced';
    }

    @Post(':spaceId/named')
    @WithLock('space:{params.spaceId}', { name: 'space-sync' })
    named(): string {
      return 'synced';
    }
  }

  it('an HTTP route: the template, or its name option; never the rendered key', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [LockModule.forRoot({ keyPrefix: uniquePrefix('http') })], controllers: [SpacesController] }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      const record = recorder(app.get(SpaceLockService));
      expect((await request(app.getHttpServer()).post('/spaces/42/sync')).status).toBe(201);
      expect((await request(app.getHttpServer()).post('/spaces/43/named')).status).toBe(201);
      record.stop();
      expect(record.of('acquired').map(({ key, name }) => ({ key, name }))).toEqual([
        { key: 'space:42', name: 'space:{params.spaceId}' },
        { key: 'space:43', name: 'space-sync' },
      ]);
    } finally {
      await app.close();
    }
  });
});

describe('coverage of the event kinds', () => {
  it('every type of LOCK_EVENT_TYPES was emitted by a test above', () => {
    expect([...seenTypes].sort()).toEqual([...LOCK_EVENT_TYPES].sort());
  });
});
