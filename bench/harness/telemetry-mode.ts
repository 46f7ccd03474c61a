import Module = require('node:module');

/**
 * `npm run bench -- --telemetry <mode>`: what OpenTelemetry the lock library finds in every
 * process of the run (the runner, each scenario's process, the workers), to show what
 * telemetry costs when it is off:
 * - `absent`: `@opentelemetry/api` cannot be resolved, as in an app without it;
 * - `api`: the API is loaded and no SDK is registered (every instrument a no-op);
 * - `sdk`: an SDK is registered (metrics to a reader that never exports, spans to memory), so
 *   every lock event is built and recorded: the cost when telemetry is on.
 * Without the switch the processes are left as they are (the API is installed: `api`).
 */
export type TelemetryMode = 'absent' | 'api' | 'sdk';
const ENV = 'NESTJS_LOCK_BENCH_TELEMETRY';
const MODES: readonly string[] = ['absent', 'api', 'sdk'];

/** Passes `mode` on to the processes this one starts (they inherit the environment). */
export function setTelemetryMode(mode: string): void {
  if (!MODES.includes(mode)) throw new Error(`--telemetry must be one of ${MODES.join(', ')}, got ${mode}`);
  process.env[ENV] = mode;
}

export function telemetryMode(): TelemetryMode | undefined {
  return process.env[ENV] as TelemetryMode | undefined;
}

/** Call first thing in every bench process. */
export function applyTelemetryMode(): void {
  const mode = telemetryMode();
  if (mode === 'absent') blockOpenTelemetry();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  else if (mode === 'api') require('@opentelemetry/api');
  else if (mode === 'sdk') registerSdk();
}

function blockOpenTelemetry(): void {
  type Resolve = (request: string, ...rest: unknown[]) => string;
  const moduleWithResolve = Module as unknown as { _resolveFilename: Resolve };
  const resolve = moduleWithResolve._resolveFilename;
  moduleWithResolve._resolveFilename = function (request: string, ...rest: unknown[]): string {
    if (request === '@opentelemetry/api' || request.startsWith('@opentelemetry/api/')) {
      throw Object.assign(new Error(`Cannot find module '${request}' (bench: --telemetry absent)`), { code: 'MODULE_NOT_FOUND' });
    }
    return resolve.call(this, request, ...rest);
  };
}

function registerSdk(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const api = require('@opentelemetry/api') as typeof import('@opentelemetry/api');
  const sdkMetrics = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
  const sdkTrace = require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks') as typeof import('@opentelemetry/context-async-hooks');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const exporter = new sdkMetrics.InMemoryMetricExporter(sdkMetrics.AggregationTemporality.CUMULATIVE);
  const reader = new sdkMetrics.PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.metrics.setGlobalMeterProvider(new sdkMetrics.MeterProvider({ readers: [reader] }));
  const spans = new sdkTrace.InMemorySpanExporter();
  api.trace.setGlobalTracerProvider(new sdkTrace.BasicTracerProvider({ spanProcessors: [new sdkTrace.SimpleSpanProcessor(spans)] }));
  // Finished spans are dropped now and then, so a long run does not grow the heap.
  setInterval(() => spans.reset(), 1_000).unref();
}
