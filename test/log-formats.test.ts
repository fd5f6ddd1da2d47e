/**
 * JANITOR_LOG_FORMAT: each format's lines parse as what its pipeline expects (pino's own for Loki,
 * Vector, Datadog; Elastic Common Schema; Google Cloud Logging's structured logging), and none of
 * them lets a connection string's password through an error.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LOG_FORMATS, loadConfig, type LogFormat } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';

const SECRET_URL = 'postgres://worker:hunter2-secret@db.internal:5432/app';

function linesOf(format: LogFormat): Array<Record<string, unknown>> {
  const lines: string[] = [];
  const log = createLogger(
    'info',
    { write: (line: string) => void lines.push(line) },
    { format, mixin: () => ({ trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', span_id: '00f067aa0ba902b7' }) },
  );
  log.info({ jobId: 'j1' }, 'revocation done');
  const error = Object.assign(new Error(`connect ECONNREFUSED for ${SECRET_URL}`), { code: 'ECONNREFUSED' });
  log.error({ err: error }, 'database unreachable');
  for (const line of lines) assert.doesNotMatch(line, /hunter2/, `${format}: the password in ${line}`);
  return lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

test('JANITOR_LOG_FORMAT is pino by default and refuses an unknown format', () => {
  assert.equal(loadConfig({ DATABASE_URL: 'postgres://u@h/db' }).logFormat, 'pino');
  assert.equal(loadConfig({ DATABASE_URL: 'postgres://u@h/db', JANITOR_LOG_FORMAT: 'ecs' }).logFormat, 'ecs');
  assert.throws(() => loadConfig({ DATABASE_URL: 'postgres://u@h/db', JANITOR_LOG_FORMAT: 'json' }), /JANITOR_LOG_FORMAT/);
  assert.deepEqual([...LOG_FORMATS], ['pino', 'ecs', 'gcp']);
});

test('pino: level, time, msg, err (Loki, Vector, Datadog read these as they are)', () => {
  const [info, error] = linesOf('pino');
  assert.equal(info?.level, 'info');
  assert.ok(!Number.isNaN(Date.parse(String(info?.time))));
  assert.equal(info?.msg, 'revocation done');
  assert.equal(info?.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(error?.level, 'error');
  assert.equal((error?.err as { code?: string }).code, 'ECONNREFUSED');
});

test('ecs: @timestamp, log.level, message, ecs.version, service.name, error.*, trace.id (dotted keys, as Elastic writes them)', () => {
  const [info, error] = linesOf('ecs');
  assert.ok(!Number.isNaN(Date.parse(String(info?.['@timestamp']))));
  assert.equal(info?.['log.level'], 'info');
  assert.equal(info?.message, 'revocation done');
  assert.match(String(info?.['ecs.version']), /^\d+\.\d+/);
  assert.equal(info?.['service.name'], 'session-janitor');
  assert.equal(info?.service, undefined, 'service is an object in ECS: no string there');
  assert.equal(info?.['trace.id'], '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(info?.['span.id'], '00f067aa0ba902b7');
  assert.equal(info?.jobId, 'j1');
  const fields = error?.error as { type?: string; message?: string; code?: string; stack_trace?: string };
  assert.equal(error?.['log.level'], 'error');
  assert.equal(fields.type, 'Error');
  assert.equal(fields.code, 'ECONNREFUSED');
  assert.match(fields.message ?? '', /ECONNREFUSED/);
  assert.match(fields.stack_trace ?? '', /^Error: connect ECONNREFUSED/);
  assert.equal(error?.err, undefined, 'the error is in ECS fields only');
});

test('gcp: severity, message, timestamp, trace fields, stack_trace for Error Reporting', () => {
  const [info, error] = linesOf('gcp');
  assert.equal(info?.severity, 'INFO');
  assert.equal(info?.message, 'revocation done');
  const timestamp = info?.timestamp as { seconds?: number; nanos?: number };
  assert.ok(Number.isInteger(timestamp.seconds) && Number.isInteger(timestamp.nanos), JSON.stringify(info));
  assert.equal(info?.['logging.googleapis.com/spanId'], '00f067aa0ba902b7');
  assert.match(String(info?.['logging.googleapis.com/trace']), /4bf92f3577b34da6a3ce929d0e0e4736$/);
  assert.deepEqual(info?.serviceContext, { service: 'session-janitor' });
  assert.equal(error?.severity, 'ERROR');
  assert.match(String(error?.stack_trace), /^Error: connect ECONNREFUSED/);
  assert.equal((error?.err as { code?: string }).code, 'ECONNREFUSED');
});
