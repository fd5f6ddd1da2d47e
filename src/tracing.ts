/**
 * OpenTelemetry tracing, which costs nothing until the standard OTEL_* variables turn it on
 * (config.ts, tracingFromEnv): only then are the SDK, the context manager and the exporter loaded
 * (dynamic imports), registered globally, and pg-boss told to trace (boss.ts). pg-boss 12.38 does
 * the rest: a job sent by a producer whose pg-boss has `openTelemetry: { propagateContext: true }`
 * carries the producer's trace context, and the worker's `process` span of that job continues the
 * producer's trace, so the revocation's log lines (traceFields) carry the producer's trace_id.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { Tracing } from './config.ts';

export interface StartedTracing {
  /** Flushes the spans not yet exported and unregisters the SDK. */
  stop(): Promise<void>;
}

export interface TracingOptions {
  /** Tests: the SDK's InMemorySpanExporter, exported span by span. */
  readonly exporter?: SpanExporter;
}

/** Registers the SDK globally when tracing is on; does nothing (and loads nothing) when it is off. */
export async function startTracing(tracing: Tracing, options: TracingOptions = {}): Promise<StartedTracing> {
  if (!tracing.enabled) return { stop: async () => undefined };
  const [{ TracerProvider, BatchSpanProcessor, SimpleSpanProcessor, ConsoleSpanExporter }, { AsyncLocalStorageContextManager }, core] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/core'),
  ]);
  let processor;
  if (options.exporter !== undefined) processor = new SimpleSpanProcessor({ exporter: options.exporter });
  else if (tracing.exporter === 'console') processor = new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() });
  else {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    processor = new BatchSpanProcessor({ exporter: new OTLPTraceExporter() });
  }
  const provider = new TracerProvider({ spanProcessors: [processor] });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new core.CompositePropagator({ propagators: [new core.W3CTraceContextPropagator(), new core.W3CBaggagePropagator()] }));
  trace.setGlobalTracerProvider(provider);
  return {
    stop: async () => {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

/**
 * The active span's ids for every log line (pino's mixin): the names OpenTelemetry's own pino
 * instrumentation uses, which the gcp format maps to Cloud Logging's trace fields and the ecs one
 * to trace.id. Nothing outside a span (or with tracing off).
 */
export function traceFields(): Record<string, string> {
  const span = trace.getSpanContext(context.active());
  if (span === undefined || !trace.isSpanContextValid(span)) return {};
  return { trace_id: span.traceId, span_id: span.spanId, trace_flags: `0${span.traceFlags.toString(16)}` };
}
