/**
 * OpenTelemetry: off (nothing loaded, pg-boss untraced) until the standard OTEL_* variables turn it
 * on; then a revocation sent by a producer whose pg-boss stores its trace context is processed in a
 * span of the producer's trace, and the revocation's log lines carry the producer's trace_id. Spans
 * go to the SDK's in-memory exporter here (an OTLP endpoint in production).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace';
import { PgBoss } from 'pg-boss';
import { enqueueRevocation, waitForRevocation } from '../src/client.ts';
import { ConfigError, tracingFromEnv } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { QUEUES } from '../src/queues.ts';
import { startTracing, traceFields } from '../src/tracing.ts';
import { startWorker } from '../src/worker.ts';
import { createTestDatabase, insertSessions, testConfig, type TestDatabase } from './helpers/database.ts';
import { until } from './helpers/wait.ts';

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(async () => {
  await db.drop();
});

test('tracing is on only when the OTEL_* variables say where spans go', () => {
  assert.deepEqual(tracingFromEnv({}), { enabled: false, exporter: 'otlp' });
  assert.equal(tracingFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).enabled, true);
  assert.equal(tracingFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }).enabled, true);
  assert.deepEqual(tracingFromEnv({ OTEL_TRACES_EXPORTER: 'console' }), { enabled: true, exporter: 'console' });
  assert.equal(tracingFromEnv({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).enabled, false);
  assert.equal(tracingFromEnv({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).enabled, false);
  assert.throws(() => tracingFromEnv({ OTEL_TRACES_EXPORTER: 'zipkin' }), ConfigError);
});

interface Line {
  msg: string;
  jobId?: string;
  trace_id?: string;
}

test("a revocation continues its producer's trace: a span in the producer's trace, and its log lines carry the trace_id", { timeout: 120_000 }, async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = await startTracing({ enabled: true, exporter: 'otlp' }, { exporter });
  const lines: Line[] = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Line) }, { mixin: traceFields });
  const config = testConfig(db.url, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' });
  assert.equal(config.tracing.enabled, true);
  const worker = await startWorker(config, log);
  // The producer: its own pg-boss, storing the trace context of each send (docs/producers.md).
  const producer = new PgBoss({ connectionString: db.url, supervise: false, schedule: false, openTelemetry: { propagateContext: true } });
  producer.on('error', () => undefined);
  await producer.start();
  try {
    const [session] = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
    assert.ok(session);
    let producerTrace = '';
    const jobId = await trace.getTracer('a-producer').startActiveSpan('password change', async (span) => {
      producerTrace = span.spanContext().traceId;
      try {
        return await enqueueRevocation(producer, { userId: session.userId, reason: 'password-changed' });
      } finally {
        span.end();
      }
    });
    assert.ok(jobId);
    assert.deepEqual(await waitForRevocation(producer, jobId), { revoked: 1 });
    const done = await until('the revocation done line', async () => lines.find((l) => l.msg === 'revocation done' && l.jobId === jobId));
    assert.equal(done.trace_id, producerTrace, "the revocation's log line carries the producer's trace_id");
    const spans = await until("the worker's process span", async () => {
      const found = exporter.getFinishedSpans().filter((s) => s.kind === SpanKind.CONSUMER && s.name === `process ${QUEUES.revoke}`);
      return found.length > 0 && found;
    });
    assert.ok(
      spans.some((s) => s.spanContext().traceId === producerTrace),
      `no process span in the producer's trace ${producerTrace}: ${spans.map((s) => s.spanContext().traceId).join(', ')}`,
    );
  } finally {
    await producer.stop({ graceful: false });
    await worker.stop();
    await tracing.stop();
  }
});

test('with tracing off: no spans, no trace fields, and startTracing loads nothing', async () => {
  const tracing = await startTracing({ enabled: false, exporter: 'otlp' });
  const lines: Line[] = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Line) });
  const config = testConfig(db.url, { JANITOR_PURGE_CRON: '0 0 1 1 *', JANITOR_REAP_CRON: '0 0 1 1 *' });
  assert.equal(config.tracing.enabled, false);
  const worker = await startWorker(config, log);
  const producer = new PgBoss({ connectionString: db.url, supervise: false, schedule: false });
  producer.on('error', () => undefined);
  await producer.start();
  try {
    const [session] = await insertSessions(db.pool, [{ expiresIn: 86_400 }]);
    assert.ok(session);
    const jobId = await enqueueRevocation(producer, { userId: session.userId, reason: 'password-changed' });
    assert.ok(jobId);
    assert.deepEqual(await waitForRevocation(producer, jobId), { revoked: 1 });
    const done = await until('the revocation done line', async () => lines.find((l) => l.msg === 'revocation done' && l.jobId === jobId));
    assert.equal(done.trace_id, undefined);
    // No SDK registered: the API's no-op provider, whose spans are not recorded.
    assert.equal(trace.getTracer('x').startSpan('y').isRecording(), false);
  } finally {
    await producer.stop({ graceful: false });
    await worker.stop();
    await tracing.stop();
  }
});
