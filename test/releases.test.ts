/**
 * Releases roll forward and back (docs/deployment.md, "Releases"):
 * - expand/contract: this release's worker runs against the schema of a later release that only
 *   added things (a synthetic migration after the latest), and refuses, in one line, one that holds a
 *   migration marked `--! breaking`; the same for pg-boss's schema, which allows no latitude;
 * - the forward path: a database left by every earlier schema version, with revocations queued
 *   before the upgrade, is migrated by this release and its worker completes them;
 * - the previous release: its worker (a git worktree of its tag) runs against the schema this
 *   release migrates to.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import pg from 'pg';
import { createBoss, ensureQueues } from '../src/boss.ts';
import { buildInfo } from '../src/build-info.ts';
import { createAuthTables } from '../src/db/dev-bootstrap.ts';
import { migrateOwnSchema, readVersion } from '../src/db/migrate.ts';
import { LATEST_VERSION, MIGRATIONS, parseMigration, type Migration } from '../src/db/sql/migrations.ts';
import { QUEUES } from '../src/queues.ts';
import { closePool, createTestDatabase, databaseUrl, insertSessions, silentLogger, testConfig, type TestDatabase } from './helpers/database.ts';
import { runCli } from './helpers/process.ts';
import { NO_SCHEDULE, proveWorkerWorks } from './helpers/release-proof.ts';
import { ROOT, git, listedReleases, releaseCommit, versionBelow } from './helpers/releases.ts';
import { until } from './helpers/wait.ts';

const release = buildInfo().version;
const NEXT = LATEST_VERSION + 1;
const FUTURE_RELEASE = '99.0.0';

/** A later release's migration, as its file would read. */
function synthetic(breaking: boolean): Migration {
  const header = `-- session_janitor migration ${NEXT}: a later release's ${breaking ? 'contract' : 'expansion'} (test/releases.test.ts)\n`;
  const body = breaking
    ? // What a contract step does: the older release still reads this table.
      '--! breaking\nALTER TABLE "session_janitor".reap_position RENAME TO reap_cursor;\n'
    : // What an expansion does: a new column with a default, a new table; nothing is taken away.
      'ALTER TABLE "session_janitor".reap_position ADD COLUMN IF NOT EXISTS pass_started_at timestamptz;\nCREATE TABLE "session_janitor".later_feature (id bigint PRIMARY KEY);\n';
  return parseMigration(`${String(NEXT).padStart(6, '0')}.sql`, header + body);
}

/** The database as the later release's `migrate` leaves it: this release's migrations, then its one. */
async function advance(db: TestDatabase, breaking: boolean): Promise<void> {
  const applied = await migrateOwnSchema(db.pool, testConfig(db.url), NEXT, { migrations: [...MIGRATIONS, synthetic(breaking)], release: FUTURE_RELEASE });
  assert.deepEqual(applied, [NEXT]);
}

/** The one line a refused command prints on stderr (the JSON log goes to stdout for `start`, to stderr at info for the others). */
function refusal(stderr: string): string {
  const lines = stderr
    .trim()
    .split('\n')
    .filter((line) => !line.startsWith('{'));
  assert.equal(lines.length, 1, `not one line:\n${stderr}`);
  return lines[0] ?? '';
}

describe('expand/contract: this release against the schema of a later one', { timeout: 300_000 }, () => {
  test(`a later non-breaking migration (${NEXT}): the worker purges, reaps and revokes, and says the schema is newer; status works`, async () => {
    const db = await createTestDatabase();
    try {
      await advance(db, false);
      const run = await proveWorkerWorks(db.url);
      assert.match(
        run.output,
        new RegExp(`the session_janitor schema is at version ${NEXT}, newer than release ${release.replaceAll('.', '\\.')} knows \\(${LATEST_VERSION}\\)`),
      );
      const status = await runCli(['status', '--json'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn' }).finished;
      assert.equal(status.code, 0, status.stderr);
    } finally {
      await db.drop();
    }
  });

  test(`a later breaking migration (${NEXT}): start (JANITOR_MIGRATE false or true), migrate and purge-expired are refused in one line naming the release; nothing is deleted`, async () => {
    const db = await createTestDatabase();
    try {
      await advance(db, true);
      const [expired] = await insertSessions(db.pool, [{ expiresIn: -3600 }]);
      assert.ok(expired);
      const expected = new RegExp(
        `^session-janitor: the session_janitor schema has migration ${NEXT}, marked breaking, applied by release ${FUTURE_RELEASE.replaceAll('.', '\\.')}: ` +
          `release ${release.replaceAll('.', '\\.')} knows migrations up to ${LATEST_VERSION} and must not run against it; run release ${FUTURE_RELEASE.replaceAll('.', '\\.')} or later`,
      );
      const env = { DATABASE_URL: db.url, JANITOR_METRICS_PORT: '0', JANITOR_METRICS_HOST: '127.0.0.1', ...NO_SCHEDULE };
      for (const [args, extra] of [
        [['start'], { JANITOR_MIGRATE: 'false' }],
        [['start'], { JANITOR_MIGRATE: 'true' }],
        [['migrate'], {}],
        [['purge-expired'], {}],
      ] as const) {
        const result = await runCli(args, { ...env, ...extra }).finished;
        assert.equal(result.code, 1, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
        assert.match(refusal(result.stderr), expected, args.join(' '));
      }
      const left = await db.pool.query('SELECT 1 FROM auth.refresh_session WHERE id = $1', [expired.id]);
      assert.equal(left.rowCount, 1, 'the refused purge deleted');
      assert.equal(await readVersion(db.pool), NEXT, 'the refused migrate changed the version');
    } finally {
      await db.drop();
    }
  });
});

describe("pg-boss's schema: only pg-boss's own version runs", { timeout: 300_000 }, () => {
  const pinned = buildInfo().pgbossSchemaVersion;

  test('a newer pgboss schema (a later pg-boss pin) is refused in one line by start (JANITOR_MIGRATE false or true) and migrate, never silently run', async () => {
    const db = await createTestDatabase();
    try {
      await db.pool.query('UPDATE pgboss.version SET version = version + 1');
      const env = { DATABASE_URL: db.url, JANITOR_METRICS_PORT: '0', JANITOR_METRICS_HOST: '127.0.0.1', ...NO_SCHEDULE };
      for (const [args, extra] of [
        [['start'], { JANITOR_MIGRATE: 'false' }],
        [['start'], { JANITOR_MIGRATE: 'true' }],
        [['migrate'], {}],
        [['status'], {}],
      ] as const) {
        const result = await runCli(args, { ...env, ...extra }).finished;
        assert.equal(result.code, 1, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
        assert.match(
          refusal(result.stderr),
          new RegExp(
            `^session-janitor: the pg-boss schema pgboss is at version ${pinned + 1}, newer than pg-boss ${buildInfo().pgbossVersion.replaceAll('.', '\\.')} of release .* knows \\(${pinned}\\): a later release upgraded pg-boss`,
          ),
          args.join(' '),
        );
      }
      const { rows } = await db.pool.query<{ version: number }>('SELECT version FROM pgboss.version');
      assert.equal(rows[0]?.version, pinned + 1, 'pg-boss was migrated or rolled back');
    } finally {
      await db.drop();
    }
  });

  test("an older pgboss schema (pg-boss 12.12's): the worker refuses in one line until `migrate`, which upgrades it; then the worker works", async () => {
    const { url, drop } = await emptyDatabase();
    try {
      const { PgBoss: Old } = (await import('pg-boss-12-12')) as {
        PgBoss: new (options: { connectionString: string }) => { start(): Promise<unknown>; stop(o: object): Promise<void> };
      };
      const old = new Old({ connectionString: url });
      await old.start();
      await old.stop({ graceful: false });
      const pool = new pg.Pool({ connectionString: url, max: 1 });
      const version = async () => (await pool.query<{ version: number }>('SELECT version FROM pgboss.version')).rows[0]?.version;
      try {
        const before = await version();
        assert.ok(before !== undefined && before < pinned, `pg-boss 12.12 installed schema version ${before}`);
        const env = { DATABASE_URL: url, JANITOR_METRICS_PORT: '0', JANITOR_METRICS_HOST: '127.0.0.1', ...NO_SCHEDULE };
        const refused = await runCli(['start'], { ...env, JANITOR_MIGRATE: 'false' }).finished;
        assert.equal(refused.code, 1, refused.stdout + refused.stderr);
        assert.match(
          refusal(refused.stderr),
          new RegExp(`^session-janitor: the pg-boss schema pgboss is at version ${before}, pg-boss .* needs ${pinned}: run \`npx session-janitor migrate\``),
        );
        const migrated = await runCli(['migrate'], { ...env, LOG_LEVEL: 'warn' }).finished;
        assert.equal(migrated.code, 0, migrated.stderr);
        assert.equal(await version(), pinned);
      } finally {
        await closePool(pool);
      }
      await proveWorkerWorks(url);
    } finally {
      await drop();
    }
  });
});

/** A new database with only the auth tables: what an earlier release found before its first migrate. */
async function emptyDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = process.env.SJ_TEST_ADMIN_URL;
  assert.ok(admin, 'SJ_TEST_ADMIN_URL is unset: run with the global setup');
  const name = `sj_release_${randomBytes(5).toString('hex')}`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  const url = databaseUrl(admin, name);
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    await createAuthTables(pool);
  } finally {
    await closePool(pool);
  }
  return {
    url,
    drop: async () => {
      const c = new pg.Client({ connectionString: admin });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

describe('the forward path: a database of every earlier schema version, revocations queued before the upgrade', { timeout: 600_000 }, () => {
  for (let version = 1; version < LATEST_VERSION; version++) {
    test(`schema version ${version}: this release's migrate, then its worker completes the revocation queued before, and works`, async () => {
      const { url, drop } = await emptyDatabase();
      const pool = new pg.Pool({ connectionString: url, max: 2 });
      try {
        // The earlier release's migrate: pg-boss (the same pin since 0.1.0), its migrations, its queues.
        const config = testConfig(url);
        const boss = createBoss(config, url, { role: 'tool', migrate: true }, silentLogger());
        await boss.start();
        let queued: string | null;
        const [a, b, keep] = await insertSessions(pool, [
          { expiresIn: 86_400, user: 0 },
          { expiresIn: 86_400, user: 0 },
          { expiresIn: 86_400, user: 1 },
        ]);
        assert.ok(a && b && keep);
        const request = { userId: a.userId, reason: 'queued-before-upgrade', requestedBy: 'releases.test.ts' };
        try {
          assert.deepEqual(
            await migrateOwnSchema(pool, config, version, { migrations: MIGRATIONS, release: 'earlier' }),
            Array.from({ length: version }, (_, i) => i + 1),
          );
          await ensureQueues(boss, config);
          // A producer of that release: the SQL function from migration 3 on, pg-boss's send before.
          queued =
            version >= 3
              ? ((await pool.query<{ id: string | null }>('SELECT session_janitor.enqueue_revocation($1::jsonb) AS id', [JSON.stringify(request)])).rows[0]
                  ?.id ?? null)
              : await boss.send(QUEUES.revoke, request);
        } finally {
          await boss.stop({ graceful: false });
        }
        assert.ok(queued);

        const migrated = await runCli(['migrate'], { DATABASE_URL: url, LOG_LEVEL: 'warn', ...NO_SCHEDULE }).finished;
        assert.equal(migrated.code, 0, migrated.stderr);
        assert.equal(await readVersion(pool), LATEST_VERSION);
        const recorded = await pool.query<{ version: number; release: string | null; breaking: boolean }>(
          'SELECT version, release, breaking FROM session_janitor.migration WHERE version > $1 ORDER BY version',
          [version],
        );
        assert.ok(
          recorded.rows.filter((r) => r.version >= 6).every((r) => r.release === release && !r.breaking),
          `migrations from 6 on record this release: ${JSON.stringify(recorded.rows)}`,
        );

        await proveWorkerWorks(url);
        const job = await until('the revocation queued before the upgrade', async () => {
          const row = (await pool.query<{ state: string; output: unknown }>('SELECT state::text, output FROM pgboss.job WHERE id = $1', [queued])).rows[0];
          return row?.state === 'completed' && row;
        });
        assert.deepEqual(job.output, { revoked: 2 });
        const left = await pool.query<{ id: number }>('SELECT id FROM auth.refresh_session WHERE id = ANY($1) ORDER BY id', [[a.id, b.id, keep.id]]);
        assert.deepEqual(
          left.rows.map((r) => r.id),
          [keep.id],
        );
      } finally {
        await closePool(pool);
        await drop();
      }
    });
  }
});

/**
 * The first release that carries the rule (a release runs against the schema of the next unless a
 * migration is breaking). Releases before it refuse any schema but their own by construction.
 */
const FIRST_RELEASE_WITH_THE_RULE = '0.2.0';

/** The release before this one (CHANGELOG.md); SJ_TEST_PREVIOUS_RELEASE=X.Y.Z picks another, to run this test against any release. */
function previousRelease(): string {
  const override = process.env.SJ_TEST_PREVIOUS_RELEASE;
  if (override !== undefined && override !== '') return override.replace(/^v/, '');
  const previous = listedReleases().find((v) => versionBelow(v, release));
  assert.ok(previous, `CHANGELOG.md lists no release before ${release}`);
  return previous;
}

/** A checkout of the release's commit beside this one, on this checkout's node_modules (the same pg-boss pin) or its own. */
async function withReleaseCheckout(version: string, fn: (cli: string, samePgBoss: boolean) => Promise<void>): Promise<void> {
  const commit = releaseCommit(version);
  const dir = mkdtempSync(path.join(tmpdir(), `sj-v${version}-`));
  git('worktree', 'add', '--detach', dir, commit);
  try {
    const pin = (lock: string) => (JSON.parse(lock) as { packages: Record<string, { version?: string }> }).packages['node_modules/pg-boss']?.version;
    const samePgBoss = pin(git('show', `${commit}:package-lock.json`)) === pin(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
    symlinkSync(realpathSync(path.join(ROOT, 'node_modules')), path.join(dir, 'node_modules'));
    await fn(path.join(dir, 'src', 'cli.ts'), samePgBoss);
  } finally {
    git('worktree', 'remove', '--force', dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the previous release against the schema this release migrates to', { timeout: 300_000 }, () => {
  const previous = previousRelease();
  if (versionBelow(previous, FIRST_RELEASE_WITH_THE_RULE)) {
    // The previous release (0.1.0) predates the rule and refuses any schema but its own: the way back
    // to it is docs/deployment.md's (sql/undo/000008.sql, 000007.sql, then 000006.sql), proven here with its own code. From the
    // release after 0.2.0 on, the test below runs 0.2.0's worker against the newer schema instead.
    test(`rolling back to ${previous} (before the rule): its worker refuses this release's schema in one line, works after sql/undo/000008.sql, 000007.sql and 000006.sql; rolling forward again works`, async () => {
      assert.equal(release, FIRST_RELEASE_WITH_THE_RULE, `sql/undo/ is the way from ${FIRST_RELEASE_WITH_THE_RULE} back to ${previous}, not from ${release}`);
      await withReleaseCheckout(previous, async (cli, samePgBoss) => {
        assert.ok(samePgBoss, `${previous} pins another pg-boss`);
        const db = await createTestDatabase(); // migrated by this release: version 7
        try {
          const env = { DATABASE_URL: db.url, JANITOR_MIGRATE: 'false', JANITOR_METRICS_PORT: '0', JANITOR_METRICS_HOST: '127.0.0.1', ...NO_SCHEDULE };
          // 1. `kubectl rollout undo`: the previous release's pods refuse to start, in one line.
          const refused = await runCli(['start'], env, { cli }).finished;
          assert.equal(refused.code, 1, refused.stdout + refused.stderr);
          assert.match(
            refusal(refused.stderr),
            new RegExp(`^session-janitor: the session_janitor schema is at version ${LATEST_VERSION}, this worker needs 5`),
          );
          // 2. The undo script, as `psql -1 -f` runs it (one transaction).
          const client = new pg.Client({ connectionString: db.url });
          await client.connect();
          try {
            // The newest first, each in its own transaction, as the docs run them.
            for (const undo of ['000008.sql', '000007.sql', '000006.sql']) {
              await client.query(`BEGIN;\n${readFileSync(path.join(ROOT, 'sql', 'undo', undo), 'utf8')}\nCOMMIT;`);
            }
          } finally {
            await client.end();
          }
          assert.equal(await readVersion(db.pool), 5);
          // 3. The previous release's worker starts and works.
          await proveWorkerWorks(db.url, { cli });
          // 4. Rolling forward again: this release's migrate, then its worker.
          const migrated = await runCli(['migrate'], { DATABASE_URL: db.url, LOG_LEVEL: 'warn', ...NO_SCHEDULE }).finished;
          assert.equal(migrated.code, 0, migrated.stderr);
          assert.equal(await readVersion(db.pool), LATEST_VERSION);
          await proveWorkerWorks(db.url);
        } finally {
          await db.drop();
        }
      });
    });
    return;
  }

  test(`release ${previous} (its tag, in a git worktree) works against this release's schema, migrated by this release`, async () => {
    await withReleaseCheckout(previous, async (cli, samePgBoss) => {
      const db = await createTestDatabase(); // migrated by this release (the template is installed by its install())
      try {
        if (samePgBoss) {
          await proveWorkerWorks(db.url, { cli });
        } else {
          // A pg-boss pin change is breaking for the release before (docs/deployment.md, "pg-boss
          // upgrades"): it must refuse in one line, not crash-loop with a stack trace.
          const result = await runCli(['start'], { DATABASE_URL: db.url, JANITOR_MIGRATE: 'false', JANITOR_METRICS_PORT: '0' }, { cli }).finished;
          assert.equal(result.code, 1);
          assert.match(refusal(result.stderr), /pg-boss schema .* newer than pg-boss/);
        }
      } finally {
        await db.drop();
      }
    });
  });
});
