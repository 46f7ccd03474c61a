import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { context, metrics, trace, type Attributes } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type Histogram,
  type MetricData,
} from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { LockModule, SpaceLockService, WithLock, type LockEventType, type LockModuleOptions } from '../../lib';
import { uniquePrefix } from '../redis/redis-test-app';
import { RedisServer, until } from '../support/redis-server';
import { releaseSubscribed } from './observability-support';


@Injectable()
class ReportJob {
  @WithLock('report:{0}')
  run(id: string): string {
    return `report ${id}`;
  }
}

function replica(options: LockModuleOptions): Promise<import('@nestjs/common').INestApplicationContext> {
  @Module({ imports: [LockModule.forRoot(options)], providers: [ReportJob] })
  class Replica {}
  return NestFactory.createApplicationContext(Replica, { logger: false });
}

/**
 * The real OpenTelemetry SDK (metrics with an in-memory exporter, traces with an in-memory span
 * exporter, async-hooks context), registered before the apps start, and a contention scenario
 * between two replicas on Redis whose every count is known in advance.
 */
describe('OpenTelemetry metrics and traces (real SDK, two replicas on a private redis-server)', () => {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  const prefix = uniquePrefix('otel');
  let a: SpaceLockService;
  let b: SpaceLockService;
  let apps: { close(): Promise<void> }[] = [];
  let redis: RedisServer;

  beforeAll(async () => {
    context.setGlobalContextManager(contextManager);
    metrics.setGlobalMeterProvider(meterProvider);
    trace.setGlobalTracerProvider(tracerProvider);
    redis = await RedisServer.start();
    const options: LockModuleOptions = { backend: 'redis', keyPrefix: prefix, ttlMs: 5_000, redis: { url: redis.url } };
    apps = [await replica(options), await replica(options)];
    [a, b] = apps.map((app) => (app as unknown as { get(type: unknown): SpaceLockService }).get(SpaceLockService));
  });
  afterAll(async () => {
    for (const app of apps) await app.close();
    await redis?.destroy();
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
    metrics.disable();
    trace.disable();
    context.disable();
  });

  it('counts every acquisition by outcome, holds, waits, hand-offs and losses, and traces each wait under the request span', async () => {
    // A holds space:1; B finds it held (no wait), times out (100 ms), then waits inside a
    // request span until A's release hands it over through the store.
    const held = await a.acquire('space:1', { name: 'space' });
    expect(await b.tryAcquire('space:1', { name: 'space' })).toBeNull();
    expect(await b.tryAcquire('space:1', { name: 'space', waitMs: 100 })).toBeNull();
    const tracer = trace.getTracer('test');
    const requestSpan = tracer.startSpan('GET /spaces/1');
    const bQueued = next(b, 'contended');
    const waiting = context.with(trace.setSpan(context.active(), requestSpan), () => b.acquire('space:1', { name: 'space', waitMs: 5_000 }));
    await bQueued;
    // The release passes the lease to B only over B's subscription: wait until it is up.
    await releaseSubscribed(redis.url, `${prefix}space:1`);
    await held.release();
    const passed = await waiting;
    requestSpan.end();

    // Two callers of A on one key: the second gets the lease from the first (local hand-off).
    const first = await a.acquire('space:2', { name: 'space' });
    const aQueued = next(a, 'contended');
    const second = a.acquire('space:2', { name: 'space', waitMs: 5_000 });
    await aQueued;
    await first.release();
    await (await second).release();

    // An operator reaps B's lease; B learns it at its next extend: one lease lost.
    await a.forceRelease('space:1', { reason: 'test', caller: 'ops' });
    expect(await passed.extend()).toBe(false);
    await passed.release();

    // @WithLock names its lock by its template, never by the rendered key.
    const app = apps[0] as unknown as { get(type: unknown): ReportJob };
    expect(await app.get(ReportJob).run('7')).toBe('report 7');

    await reader.forceFlush();
    const found = metricsByName(metricExporter);
    const space = { 'lock.name': 'space', backend: 'redis', mode: 'exclusive' };
    const report = { 'lock.name': 'report:{0}', backend: 'redis', mode: 'exclusive' };

    expect(histogramCounts(found['lock.acquire.duration'])).toEqual(
      new Map([
        [key({ ...space, outcome: 'acquired' }), 4],
        [key({ ...space, outcome: 'held' }), 1],
        [key({ ...space, outcome: 'timeout' }), 1],
        [key({ ...report, outcome: 'acquired' }), 1],
      ]),
    );
    expect(histogramCounts(found['lock.hold.duration'])).toEqual(new Map([[key(space), 3], [key(report), 1]]));
    expect(sums(found['lock.held'])).toEqual(new Map([[key(space), 0], [key(report), 0]]));
    expect(sums(found['lock.waiting'])).toEqual(new Map([[key(space), 0]]));
    expect(sums(found['lock.handoff'])).toEqual(
      new Map([
        [key({ ...space, via: 'store' }), 1],
        [key({ ...space, via: 'local' }), 1],
      ]),
    );
    expect(sums(found['lock.lease.lost'])).toEqual(new Map([[key({ ...space, reason: 'taken-over' }), 1]]));
    expect(found['lock.heartbeat.failures']).toBeUndefined();
    expect(found['lock.acquire.duration'].descriptor.unit).toBe('s');

    // One span per acquisition that waited: the timeout, the store hand-off, the local one.
    const spans = spanExporter.getFinishedSpans().filter((span) => span.name === 'lock.acquire');
    expect(spans.map((span) => span.attributes.outcome).sort()).toEqual(['acquired', 'acquired', 'timeout']);
    const viaStore = spans.find((span) => span.events.some((event) => event.attributes?.via === 'store'));
    expect(viaStore?.events.map((event) => event.name)).toEqual(['queued', 'handed over']);
    expect(viaStore?.parentSpanContext?.spanId).toBe(requestSpan.spanContext().spanId);
    expect(viaStore?.spanContext().traceId).toBe(requestSpan.spanContext().traceId);
    expect(viaStore?.attributes).toMatchObject({ 'lock.name': 'space', 'lock.key': 'space:1', backend: 'redis', mode: 'exclusive' });
    const local = spans.find((span) => span.events.some((event) => event.attributes?.via === 'local'));
    expect(local?.events.map((event) => event.name)).toEqual(['queued', 'handed over']);
    const timedOut = spans.find((span) => span.attributes.outcome === 'timeout');
    expect(timedOut?.events.map((event) => event.name)).toEqual(['queued']);
  });

  it('counts heartbeat failures and error outcomes while a private redis-server is stopped', async () => {
    const server = await RedisServer.start();
    const app = await replica({ backend: 'redis', keyPrefix: prefix, ttlMs: 3_000, heartbeatMs: 100, backendTimeoutMs: 200, redis: { url: server.url } });
    const locks = (app as unknown as { get(type: unknown): SpaceLockService }).get(SpaceLockService);
    const failedBeats: unknown[] = [];
    const stop = locks.onLockEvent((event) => event.type === 'heartbeat-failed' && failedBeats.push(event));
    try {
      const lease = await locks.acquire('paused', { name: 'paused' });
      server.pause();
      try {
        await until(() => failedBeats.length >= 2, 5_000, 'two failed heartbeats');
        await expect(locks.acquire('paused:2', { name: 'paused' })).rejects.toThrow(/timed out/);
      } finally {
        server.resume();
      }
      await lease.release();
      stop();
      await reader.forceFlush();
      const found = metricsByName(metricExporter);
      const paused = { 'lock.name': 'paused', backend: 'redis', mode: 'exclusive' };
      expect(sums(found['lock.heartbeat.failures'])).toEqual(new Map([[key({ backend: 'redis' }), failedBeats.length]]));
      const counts = histogramCounts(found['lock.acquire.duration']);
      expect(counts.get(key({ ...paused, outcome: 'error' }))).toBe(1);
      expect(counts.get(key({ ...paused, outcome: 'acquired' }))).toBe(1);
    } finally {
      stop();
      await app.close();
      await server.destroy();
    }
  });
});

/** Resolves at the next event of `type` from `locks`. */
function next(locks: SpaceLockService, type: LockEventType): Promise<void> {
  return new Promise((resolve) => {
    const stop = locks.onLockEvent((event) => {
      if (event.type !== type) return;
      stop();
      resolve();
    });
  });
}

function metricsByName(exporter: InMemoryMetricExporter): Record<string, MetricData> {
  const exported = exporter.getMetrics();
  const last = exported[exported.length - 1];
  const byName: Record<string, MetricData> = {};
  for (const scope of last.scopeMetrics) for (const metric of scope.metrics) byName[metric.descriptor.name] = metric;
  return byName;
}

function key(attributes: Attributes): string {
  return JSON.stringify(Object.keys(attributes).sort().map((name) => [name, attributes[name]]));
}

function histogramCounts(metric: MetricData): Map<string, number> {
  expect(metric.dataPointType).toBe(DataPointType.HISTOGRAM);
  return new Map(metric.dataPoints.map((point) => [key(point.attributes), (point.value as Histogram).count]));
}

function sums(metric: MetricData): Map<string, number> {
  return new Map(metric.dataPoints.map((point) => [key(point.attributes), point.value as number]));
}
