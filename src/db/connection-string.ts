/**
 * The one home of what the worker says about a connection string: its password is never shown,
 * wherever libpq and node-pg (pg-connection-string) accept one: in the user info
 * (`postgres://u:pw@h/db`) or as a query parameter (`?password=pw`, `?sslpassword=pw`, a key that
 * may be percent-encoded), and, in an error message, as a `password=pw` keyword. The host may be a
 * unix socket directory, given as `?host=/dir` or percent-encoded (`postgres://%2Fdir/db`); a
 * `host` parameter wins over the URL's host, as in pg-connection-string.
 */

const MASK = '***';

/** Percent-decoded; a malformed escape stays as it is, as URLSearchParams leaves it. */
function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A query parameter's key names a password (password, sslpassword), however it is encoded. */
const secretKey = (key: string): boolean => /password/i.test(decode(key.replaceAll('+', ' '))) || /password/i.test(key);

/** pg-connection-string's stand-in for an empty host after user info (`postgres://u@/db?host=/dir`), which URL refuses. */
const DUMMY_HOST = '___DUMMY___';

interface Parsed {
  readonly url: URL;
  /** The host node-pg connects to: `?host=`, else the URL's host, decoded (a socket directory). */
  readonly host: string;
  readonly dummy: boolean;
}

/** The URL as pg-connection-string reads it, or null. */
function parse(text: string): Parsed | null {
  let url: URL;
  let dummy = false;
  try {
    url = new URL(text);
  } catch {
    try {
      url = new URL(text.replace('@/', `@${DUMMY_HOST}/`));
      dummy = true;
    } catch {
      return null;
    }
  }
  return { url, dummy, host: url.searchParams.get('host') || (dummy ? '' : decode(url.hostname)) };
}

/** The connection string with every password replaced by ***, for messages and logs. */
export function redactConnectionString(text: string): string {
  const parsed = parse(text);
  if (parsed === null) return '<unparsable connection string>';
  const { url, dummy } = parsed;
  if (url.password !== '') url.password = MASK;
  if (url.search !== '') {
    url.search = url.search
      .slice(1)
      .split('&')
      .map((pair) => {
        const key = pair.split('=', 1)[0] ?? '';
        return secretKey(key) ? `${key}=${MASK}` : pair;
      })
      .join('&');
  }
  const shown = url.toString();
  return dummy ? shown.replace(`@${DUMMY_HOST}/`, '@/') : shown;
}

/** Whether a postgres:// or postgresql:// URL names a host (a name, an address or a socket directory). */
export function isPostgresUrl(text: string): boolean {
  const parsed = parse(text);
  return parsed !== null && (parsed.url.protocol === 'postgres:' || parsed.url.protocol === 'postgresql:') && parsed.host !== '';
}

/** Where a connection string leads, as node-pg reads it (query parameters win); user '' when it names none. */
export interface DatabaseTarget {
  readonly host: string;
  readonly port: string;
  readonly database: string;
  readonly user: string;
  /** A unix socket directory, not a TCP host. */
  readonly socket: boolean;
}

export function databaseTarget(text: string): DatabaseTarget | null {
  const parsed = parse(text);
  if (parsed === null) return null;
  const { url, host } = parsed;
  return {
    host,
    port: url.searchParams.get('port') || url.port || '5432',
    database: decode(url.pathname.replace(/^\//, '')),
    user: url.searchParams.get('user') || decode(url.username),
    socket: host.startsWith('/'),
  };
}

/** host:port/database as user, or /socket/dir:port/database: what logs say about the database, never the password. */
export function describeDatabase(text: string): string {
  const target = databaseTarget(text);
  if (target === null) return '<unparsable connection string>';
  return `${target.host}:${target.port}/${target.database || '(default)'}${target.user ? ` as ${target.user}` : ''}`;
}

/** The sslmodes node-postgres honours as libpq does once uselibpqcompat=true is set (pg-connection-string). */
const LIBPQ_COMPAT_MODES = new Set(['require', 'verify-ca']);

/**
 * DATABASE_URL's sslmode with libpq's meaning: node-postgres on its own takes prefer, require and
 * verify-ca for verify-full (a certificate check a server with a self-signed certificate fails).
 * require and verify-ca get pg-connection-string's uselibpqcompat=true, which does what libpq
 * does; allow and prefer (try one way, fall back to the other) node-postgres cannot do at all, and
 * verify-ca without sslrootcert has nothing to verify against: those are refused, with the
 * sslmode to use instead.
 */
export function withLibpqSslMode(text: string): { readonly connectionString: string } | { readonly refused: string } {
  const parsed = parse(text);
  const mode = parsed?.url.searchParams.get('sslmode');
  if (parsed === null || mode === null || mode === undefined) return { connectionString: text };
  if (mode === 'allow' || mode === 'prefer') {
    return {
      refused: `sslmode=${mode} (try one way, fall back to the other) is not something node-postgres can do: use sslmode=require (TLS, certificate not checked), verify-full (TLS, certificate and host checked) or disable`,
    };
  }
  if (mode === 'verify-ca' && !parsed.url.searchParams.has('sslrootcert')) {
    return { refused: 'sslmode=verify-ca needs sslrootcert=<CA file> to verify against (or use verify-full, which checks the system CAs and the host)' };
  }
  if (!LIBPQ_COMPAT_MODES.has(mode) || parsed.url.searchParams.has('uselibpqcompat')) return { connectionString: text };
  return { connectionString: `${text}${text.includes('?') ? '&' : '?'}uselibpqcompat=true` };
}

const URL_PATTERN = /postgres(?:ql)?:\/\/[^\s'"]+/gi;
const KEYWORD_PATTERN = /\b(\w*password)\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s&]+)/gi;

/** A message with every connection string redacted, and every `password=...` keyword masked. */
export function redactMessage(message: string): string {
  return message.replace(URL_PATTERN, (url) => redactConnectionString(url)).replace(KEYWORD_PATTERN, `$1=${MASK}`);
}
