import type { Attributes, Counter, Histogram, Span, Tracer, UpDownCounter } from '@opentelemetry/api';
import type { LockEvents } from '../events/lock-events';
import type { LockAttemptEventBase, LockAttemptOutcome, LockEvent } from '../events/lock-event.interface';

/** The `@opentelemetry/api` module; its types only are imported, never the module itself. */
type OpenTelemetryApi = typeof import('@opentelemetry/api');

const INSTRUMENTATION = 'nestjs-lock';
/** Lock waits run from under a millisecond (a local hand-off) to the lease length. */
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
  private readonly held: UpDownCounter;
  private readonly waiting: UpDownCounter;
  private readonly leaseLost: Counter;
  private readonly heartbeatFailures: Counter;
  private readonly handoff: Counter;
  private readonly tracer: Tracer;
  /** The span of each acquisition that waits, until it ends. */
  private readonly spans = new Map<number, Span>();

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
    this.held = meter.createUpDownCounter('lock.held', { unit: '{lease}', description: 'Leases this process holds' });
    this.waiting = meter.createUpDownCounter('lock.waiting', { unit: '{call}', description: 'Calls of this process waiting for a lock' });
    this.leaseLost = meter.createCounter('lock.lease.lost', { unit: '{lease}', description: 'Leases lost while held, by reason' });
    this.heartbeatFailures = meter.createCounter('lock.heartbeat.failures', { unit: '{heartbeat}', description: 'Heartbeats (batched extends) the store did not answer' });
    this.handoff = meter.createCounter('lock.handoff', { unit: '{lease}', description: 'Leases passed straight to a waiter, via local or store' });
    this.tracer = api.trace.getTracer(INSTRUMENTATION);
  }

  record(event: LockEvent): void {
    switch (event.type) {
      case 'contended':
        if (!event.waiting) return;
        this.waiting.add(1, attributes(event));
        this.startSpan(event);
        return;
      case 'handed-over':
        this.handoff.add(1, { ...attributes(event), via: event.via });
        this.spans.get(event.attemptId)?.addEvent('handed over', { via: event.via });
        return;
      case 'waited':
        this.waiting.add(-1, attributes(event));
        return;
      case 'acquired':
        this.acquireDuration.record(event.durationMs / 1_000, { ...attributes(event), outcome: 'acquired' });
        this.held.add(event.keys.length, attributes(event));
        this.endSpan(event, 'acquired');
        return;
      case 'missed':
        this.acquireDuration.record(event.durationMs / 1_000, { ...attributes(event), outcome: event.outcome });
        this.endSpan(event, event.outcome);
        return;
      case 'failed':
        this.acquireDuration.record(event.durationMs / 1_000, { ...attributes(event), outcome: 'error' });
        this.endSpan(event, 'error', event.error);
        return;
      case 'released':
        this.held.add(-1, attributes(event));
        this.holdDuration.record(event.heldMs / 1_000, attributes(event));
        return;
      case 'lost':
        this.held.add(-1, attributes(event));
        this.leaseLost.add(1, { ...attributes(event), reason: event.reason });
        return;
      case 'heartbeat-failed':
        this.heartbeatFailures.add(1, { backend: event.backend });
        return;
      case 'reaped':
        return;
    }
  }

  /** A child of the active span (the request's, when there is one), from the start of the acquisition. */
  private startSpan(event: LockAttemptEventBase & { startedAt: number }): void {
    const span = this.tracer.startSpan(
      'lock.acquire',
      { kind: this.api.SpanKind.INTERNAL, startTime: event.startedAt, attributes: { ...attributes(event), 'lock.key': event.key } },
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

function attributes(event: { name: string; backend: string; mode: string }): Attributes {
  return { 'lock.name': event.name, backend: event.backend, mode: event.mode };
}
