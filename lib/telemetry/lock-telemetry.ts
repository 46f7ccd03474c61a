import type { Attributes, Counter, Histogram, Span, Tracer } from '@opentelemetry/api';
import type { LockEvents } from '../events/lock-events';
import type { LockAttemptEventBase, LockAttemptOutcome, LockEvent } from '../events/lock-event.interface';

/** The `@opentelemetry/api` module; its types only are imported, never the module itself. */
type OpenTelemetryApi = typeof import('@opentelemetry/api');

const INSTRUMENTATION = 'nestjs-lock';
/** Lock waits run from under a millisecond (a local hand-off) to the lease length. */
const MAX_ATTRIBUTE_SETS = 2_000;
const OVERFLOW_ATTRIBUTES: Attributes = Object.freeze({ 'otel.metric.overflow': true });
const DURATION_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * `@opentelemetry/api` when the app has it, else `undefined`. Loaded here and nowhere else, at
 * module construction: an app without it never loads it (an optional peer dependency).
 */
export function loadOpenTelemetry(): OpenTelemetryApi | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('@opentelemetry/api') as OpenTelemetryApi;
  } catch {
    return undefined;
  }
}

/**
 * Is an SDK (or agent) registered? With the bare API every instrument is a no-op, and
 * listening to lock events would cost every lock something for nothing.
 */
function sdkRegistered(api: OpenTelemetryApi): boolean {
  const metering = api.metrics.getMeter(INSTRUMENTATION).constructor !== api.createNoopMeter().constructor;
  const provider = api.trace.getTracerProvider();
  const tracing = !(provider instanceof api.ProxyTracerProvider) || provider.getDelegateTracer(INSTRUMENTATION) !== undefined;
  return metering || tracing;
}

/**
 * OpenTelemetry metrics and traces of the locks: one consumer of the lock event stream
 * (README: Observability). Attributes carry `lock.name` (bounded), never a raw key, except
 * on spans (one per call, so a key there costs no series).
 */
export class LockTelemetry {
  private readonly acquireDuration: Histogram;
  private readonly holdDuration: Histogram;
  /**
   * `lock.held` and `lock.waiting` per attribute set, observed when the SDK collects: a counter
   * here instead of two SDK recordings (each hashes its attributes) on every lock cycle.
   */
  private readonly heldCounts = new Map<Attributes, number>();
  private readonly waitingCounts = new Map<Attributes, number>();
  private readonly leaseLost: Counter;
  private readonly heartbeatFailures: Counter;
  private readonly handoff: Counter;
  private readonly tracer: Tracer;
  /** The span of each acquisition that waits, until it ends. */
  private readonly spans = new Map<number, Span>();
  /** Attribute sets, one object each: a lock cycle records four values, and building their attributes anew was most of its garbage. */
  private readonly attributeSets = new Map<string, Attributes>();

  /** Listen to `events` when the API is there and an SDK registered; returns the unsubscribe function. */
  static attach(events: LockEvents, api: OpenTelemetryApi | undefined = loadOpenTelemetry()): (() => void) | undefined {
    if (!api || !sdkRegistered(api)) return undefined;
    const telemetry = new LockTelemetry(api);
    return events.listen((event) => telemetry.record(event));
  }

  private constructor(private readonly api: OpenTelemetryApi) {
    const meter = api.metrics.getMeter(INSTRUMENTATION);
    const durationAdvice = { advice: { explicitBucketBoundaries: DURATION_BUCKETS_S } };
    this.acquireDuration = meter.createHistogram('lock.acquire.duration', {
      unit: 's',
      description: 'Time to take a lock, waits included, by outcome (acquired, held, timeout, error)',
      ...durationAdvice,
    });
    this.holdDuration = meter.createHistogram('lock.hold.duration', { unit: 's', description: 'Time a lease was held until its release', ...durationAdvice });
    meter
      .createObservableUpDownCounter('lock.held', { unit: '{lease}', description: 'Leases this process holds' })
      .addCallback((result) => this.heldCounts.forEach((count, attributes) => result.observe(count, attributes)));
    meter
      .createObservableUpDownCounter('lock.waiting', { unit: '{call}', description: 'Calls of this process waiting for a lock' })
      .addCallback((result) => this.waitingCounts.forEach((count, attributes) => result.observe(count, attributes)));
    this.leaseLost = meter.createCounter('lock.lease.lost', { unit: '{lease}', description: 'Leases lost while held, by reason' });
    this.heartbeatFailures = meter.createCounter('lock.heartbeat.failures', { unit: '{heartbeat}', description: 'Heartbeats (batched extends) the store did not answer' });
    this.handoff = meter.createCounter('lock.handoff', { unit: '{lease}', description: 'Leases passed straight to a waiter, via local or store' });
    this.tracer = api.trace.getTracer(INSTRUMENTATION);
  }

  record(event: LockEvent): void {
    switch (event.type) {
      case 'contended':
        if (!event.waiting) return;
        count(this.waitingCounts, this.attributes(event), 1);
        this.startSpan(event);
        return;
      case 'handed-over':
        this.handoff.add(1, this.attributes(event, 'via', event.via));
        this.spans.get(event.attemptId)?.addEvent('handed over', { via: event.via });
        return;
      case 'waited':
        count(this.waitingCounts, this.attributes(event), -1);
        return;
      case 'acquired':
        this.acquireDuration.record(event.durationMs / 1_000, this.attributes(event, 'outcome', 'acquired'));
        count(this.heldCounts, this.attributes(event), event.keys.length);
        this.endSpan(event, 'acquired');
        return;
      case 'missed':
        this.acquireDuration.record(event.durationMs / 1_000, this.attributes(event, 'outcome', event.outcome));
        this.endSpan(event, event.outcome);
        return;
      case 'failed':
        this.acquireDuration.record(event.durationMs / 1_000, this.attributes(event, 'outcome', 'error'));
        this.endSpan(event, 'error', event.error);
        return;
      case 'released':
        count(this.heldCounts, this.attributes(event), -1);
        this.holdDuration.record(event.heldMs / 1_000, this.attributes(event));
        return;
      case 'lost':
        count(this.heldCounts, this.attributes(event), -1);
        this.leaseLost.add(1, this.attributes(event, 'reason', event.reason));
        return;
      case 'heartbeat-failed':
        this.heartbeatFailures.add(1, { backend: event.backend });
        return;
      case 'reaped':
        return;
    }
  }

  /** `lock.name`, `backend`, `mode` (and one more when given), the same object each time. */
  private attributes(event: { name: string; backend: string; mode: string }, extra?: string, value?: string): Attributes {
    const cacheKey = `${event.name}\u0000${event.backend}\u0000${event.mode}\u0000${extra ?? ''}\u0000${value ?? ''}`;
    let found = this.attributeSets.get(cacheKey);
    if (found) return found;
    // Names are bounded by design; past the cap (a caller that is not) everything new is one
    // overflow set, as the SDK does with its own cardinality limit.
    if (this.attributeSets.size >= MAX_ATTRIBUTE_SETS) return OVERFLOW_ATTRIBUTES;
    found = { 'lock.name': event.name, backend: event.backend, mode: event.mode };
    if (extra !== undefined) found[extra] = value;
    this.attributeSets.set(cacheKey, Object.freeze(found));
    return found;
  }

  /** A child of the active span (the request's, when there is one), from the start of the acquisition. */
  private startSpan(event: LockAttemptEventBase & { startedAt: number }): void {
    const span = this.tracer.startSpan(
      'lock.acquire',
      { kind: this.api.SpanKind.INTERNAL, startTime: event.startedAt, attributes: { ...this.attributes(event), 'lock.key': event.key } },
      this.api.context.active(),
    );
    span.addEvent('queued');
    this.spans.set(event.attemptId, span);
  }

  private endSpan(event: LockAttemptEventBase, outcome: LockAttemptOutcome, error?: unknown): void {
    const span = this.spans.get(event.attemptId);
    if (!span) return;
    this.spans.delete(event.attemptId);
    span.setAttribute('outcome', outcome);
    if (error !== undefined) {
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    }
    span.end();
  }
}

function count(counts: Map<Attributes, number>, attributes: Attributes, by: number): void {
  counts.set(attributes, (counts.get(attributes) ?? 0) + by);
}
