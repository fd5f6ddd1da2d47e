/**
 * Who uses the embedded development server (db/embedded.ts): every process of the checkout that
 * uses it holds a shared advisory lock on one connection for as long as it does. The server
 * releases a lock when its connection ends, a kill -9 included, so the registry is never stale. A
 * process that leaves stops the server only when it gets the lock exclusively: nobody else uses it,
 * and nobody can join while it stops it.
 */
import type { Statement } from './identifiers.ts';

/** The lock's key: 'SJ' 'dev' 'users' in ASCII, a number nothing else of the project locks. */
const USERS_KEY = '6001719840366490482';

export const joinUsers: Statement = { name: 'sj_embedded_join', text: `SELECT pg_try_advisory_lock_shared(${USERS_KEY}::bigint) AS joined` };

export const leaveUsers: Statement = { name: 'sj_embedded_leave', text: `SELECT pg_advisory_unlock_shared(${USERS_KEY}::bigint) AS left` };

/** true: nobody else uses the server, and nobody can join it until this connection ends. */
export const lastUser: Statement = { name: 'sj_embedded_last', text: `SELECT pg_try_advisory_lock(${USERS_KEY}::bigint) AS last` };

/** The backends of a process's user connection (application_name below), gone once it has exited. */
export const userBackends: Statement = {
  name: 'sj_embedded_user_backends',
  text: 'SELECT count(*)::int AS backends FROM pg_stat_activity WHERE application_name = $1',
};

export const userApplicationName = (pid: number): string => `session-janitor dev user ${pid}`;
