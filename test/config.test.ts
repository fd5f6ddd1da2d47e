import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONFIG_VARIABLES, ConfigError, loadConfig, parseDurationSeconds, redactDatabaseUrl } from '../src/config.ts';

const expectRefused = (env: Record<string, string>, variable: string, allowed: RegExp) => {
  assert.throws(
    () => loadConfig(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
      assert.equal(error.variable, variable);
      assert.match(error.message, new RegExp(`^${variable}=`));
      assert.match(error.message, allowed);
      return true;
    },
  );
};

describe('loadConfig', () => {
  test('the defaults of the contract', () => {
    const config = loadConfig({});
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.pgbossSchema, 'pgboss');
    assert.deepEqual(config.sessionTable, { schema: 'auth', name: 'refresh_session' });
    assert.equal(config.purgeCron, '*/5 * * * *');
    assert.equal(config.reapCron, '30 * * * *');
    assert.equal(config.cronTz, 'UTC');
    assert.equal(config.expiredGraceSeconds, 0);
    assert.equal(config.idleTimeoutSeconds, 30 * 86_400);
    assert.equal(config.maxRunSeconds, 240);
    assert.equal(config.metricsPort, 9464);
    assert.equal(config.logLevel, 'info');
    assert.ok(Object.isFrozen(config));
  });

  test('durations in every unit of the contract, and `off`', () => {
    const config = loadConfig({ JANITOR_EXPIRED_GRACE: '90s', JANITOR_IDLE_TIMEOUT: '12h', JANITOR_LOCK_TIMEOUT: '250ms' });
    assert.equal(config.expiredGraceSeconds, 90);
    assert.equal(config.idleTimeoutSeconds, 12 * 3600);
    assert.equal(config.lockTimeoutMs, 250);
    assert.equal(loadConfig({ JANITOR_IDLE_TIMEOUT: 'off' }).idleTimeoutSeconds, null);
    assert.equal(loadConfig({ JANITOR_IDLE_TIMEOUT: '1h' }).idleTimeoutSeconds, 3600, 'the smallest timeout allowed');
    assert.equal(loadConfig({}).idleTimeoutSeconds, 30 * 86_400, 'the default: 30d');
    assert.equal(parseDurationSeconds('15m'), 900);
    assert.equal(loadConfig({}).scheduleCheckSeconds, 30, "pg-boss's own default cron pass");
    assert.equal(loadConfig({ JANITOR_SCHEDULE_CHECK_INTERVAL: '1s' }).scheduleCheckSeconds, 1);
    assert.equal(parseDurationSeconds('30d'), 30 * 86_400);
    assert.equal(parseDurationSeconds('15'), undefined, 'a unit is required');
  });

  const refusals: Array<[string, string, RegExp]> = [
    ['DATABASE_URL', 'mysql://user:pw@host/db', /postgres:\/\//],
    ['PGBOSS_SCHEMA', 'pgboss; DROP TABLE auth.refresh_session', /identifier/],
    ['JANITOR_SESSION_TABLE', 'auth.refresh_session; DELETE FROM auth.user', /schema\.table/],
    ['JANITOR_SESSION_TABLE', 'refresh_session', /schema\.table/],
    ['JANITOR_PURGE_CRON', '61 * * * *', /cron/],
    ['JANITOR_PURGE_CRON', '*/5 * * * * *', /five-field/],
    ['JANITOR_REAP_CRON', 'every hour', /cron/],
    ['JANITOR_CRON_TZ', 'Mars/Olympus_Mons', /time zone/],
    ['JANITOR_EXPIRED_GRACE', '-5m', /duration/],
    ['JANITOR_EXPIRED_GRACE', '10', /duration/],
    ['JANITOR_IDLE_TIMEOUT', '30m', /at least 1h/],
    ['JANITOR_IDLE_TIMEOUT', 'forever', /at least 1h/],
    ['JANITOR_IDLE_TIMEOUT', '3599s', /at least 1h/],
    ['JANITOR_BATCH_SIZE', '-100', /integer from 10/],
    ['JANITOR_BATCH_SIZE', '1e9', /integer from 10/],
    ['JANITOR_BATCH_SIZE', '5000.5', /integer from 10/],
    ['JANITOR_PURGE_CONCURRENCY', '0', /integer from 1 to 16/],
    ['JANITOR_MAX_RUN_SECONDS', '0', /integer number of seconds/],
    ['JANITOR_MAX_RUN_ROWS', '-1', /integer from 0/],
    ['JANITOR_STATEMENT_TIMEOUT', '0s', /duration from 100ms/],
    ['JANITOR_LOCK_TIMEOUT', '5m', /duration from 10ms to 60s/],
    ['JANITOR_METRICS_PORT', '70000', /TCP port/],
    ['JANITOR_METRICS_PORT', 'http', /TCP port/],
    ['JANITOR_SHUTDOWN_TIMEOUT', '1h', /duration from 1s to 300s/],
    // pg-boss refuses a cron pass rarer than 45 s (it would miss occurrences of its 60 s window).
    ['JANITOR_SCHEDULE_CHECK_INTERVAL', '60s', /duration from 1s to 45s/],
    ['JANITOR_SCHEDULE_CHECK_INTERVAL', '500ms', /duration from 1s to 45s/],
    ['JANITOR_MIGRATE', 'yes', /true or false/],
    ['LOG_LEVEL', 'verbose', /one of fatal/],
  ];
  for (const [variable, value, allowed] of refusals) {
    test(`${variable}=${JSON.stringify(value)} is refused, naming the variable, the value and what is allowed`, () => {
      expectRefused({ [variable]: value }, variable, allowed);
      assert.throws(
        () => loadConfig({ [variable]: value }),
        (error: Error) => error.message.includes(JSON.stringify(value).slice(1, -1)) || variable === 'DATABASE_URL',
      );
    });
  }

  test('batch bounds must bracket the starting size', () => {
    expectRefused({ JANITOR_BATCH_SIZE: '100', JANITOR_BATCH_MIN_SIZE: '500' }, 'JANITOR_BATCH_MIN_SIZE', /not be above JANITOR_BATCH_SIZE/);
    expectRefused({ JANITOR_BATCH_SIZE: '5000', JANITOR_BATCH_MAX_SIZE: '1000' }, 'JANITOR_BATCH_MAX_SIZE', /not be below JANITOR_BATCH_SIZE/);
    expectRefused(
      { JANITOR_BATCH_MIN_SIZE: '500', JANITOR_PURGE_BATCH_MAX_SIZE: '200' },
      'JANITOR_PURGE_BATCH_MAX_SIZE',
      /not be below JANITOR_BATCH_MIN_SIZE/,
    );
  });

  test("the purge's cap is the smaller of JANITOR_PURGE_BATCH_MAX_SIZE and JANITOR_BATCH_MAX_SIZE", () => {
    assert.equal(loadConfig({}).purgeBatchMaxSize, 5000);
    assert.equal(loadConfig({ JANITOR_PURGE_BATCH_MAX_SIZE: '12000' }).purgeBatchMaxSize, 12000);
    assert.equal(loadConfig({ JANITOR_BATCH_SIZE: '100', JANITOR_BATCH_MAX_SIZE: '100' }).purgeBatchMaxSize, 100);
  });

  test('a bad DATABASE_URL is reported without its password', () => {
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'mysql://janitor:s3cret-pw@db.internal/auth' }),
      (error: Error) => !error.message.includes('s3cret-pw') && error.message.includes('***'),
    );
    assert.equal(redactDatabaseUrl('postgres://u:p%40ss@h:5432/d'), 'postgres://u:***@h:5432/d');
  });

  test('an empty variable means its default', () => {
    assert.equal(loadConfig({ JANITOR_BATCH_SIZE: '' }).batchSize, loadConfig({}).batchSize);
  });

  test('every variable of the contract is read', () => {
    for (const name of [
      'DATABASE_URL',
      'PGBOSS_SCHEMA',
      'JANITOR_PURGE_CRON',
      'JANITOR_REAP_CRON',
      'JANITOR_CRON_TZ',
      'JANITOR_EXPIRED_GRACE',
      'JANITOR_IDLE_TIMEOUT',
      'JANITOR_BATCH_SIZE',
      'JANITOR_MAX_RUN_SECONDS',
      'JANITOR_METRICS_PORT',
      'LOG_LEVEL',
    ]) {
      assert.ok((CONFIG_VARIABLES as readonly string[]).includes(name), name);
    }
  });
});

test('an empty DATABASE_URL (a secret that did not resolve) is refused outside a checkout, and means the embedded database in one', () => {
  assert.throws(
    () => loadConfig({ DATABASE_URL: '' }, false),
    (error: unknown) => error instanceof ConfigError && error.variable === 'DATABASE_URL' && /DATABASE_URL="" is invalid: empty/.test(error.message),
  );
  assert.equal(loadConfig({ DATABASE_URL: '' }, true).databaseUrl, undefined);
  assert.equal(loadConfig({}, false).databaseUrl, undefined, 'unset stays unset: the image then says the embedded server is not installed');
});

test("DATABASE_URL's sslmode keeps libpq's meaning: require and verify-ca through pg's libpq compatibility, allow and prefer refused", () => {
  const url = 'postgres://janitor:pw@db.example:5432/auth';
  assert.equal(loadConfig({ DATABASE_URL: `${url}?sslmode=require` }).databaseUrl, `${url}?sslmode=require&uselibpqcompat=true`);
  assert.equal(loadConfig({ DATABASE_URL: `${url}?sslmode=verify-full` }).databaseUrl, `${url}?sslmode=verify-full`);
  assert.equal(loadConfig({ DATABASE_URL: `${url}?sslmode=disable` }).databaseUrl, `${url}?sslmode=disable`);
  for (const refused of ['prefer', 'allow', 'verify-ca']) {
    assert.throws(
      () => loadConfig({ DATABASE_URL: `${url}?sslmode=${refused}` }),
      (error: unknown) => error instanceof ConfigError && error.variable === 'DATABASE_URL' && !error.message.includes(':pw@'),
    );
  }
});
