/**
 * /metrics, /healthz and /readyz on JANITOR_METRICS_PORT.
 *
 * /healthz never touches the database: a database outage must not make Kubernetes restart every
 * pod. /readyz is 200 when pg-boss is started and the last database ping (which also finds the
 * sessions table) is fresh, and 503 with the reason otherwise and as soon as shutdown begins. /metrics is served from memory (gauges are refreshed by timers), so a scrape
 * never waits on, nor fails with, the database.
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface Readiness {
  /** null when ready, else why not (the body of the 503, for whoever curls it). */
  readonly notReady: () => string | null;
}

/** onScraped: after each /metrics response that was served whole. */
export function createHttpServer(registry: Registry, readiness: Readiness, onScraped: () => void = () => {}): Server {
  return createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text, onScraped),
        () => response.writeHead(500).end('metrics unavailable\n'),
      );
    } else if (path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const reason = readiness.notReady();
      response.writeHead(reason === null ? 200 : 503, { 'content-type': 'text/plain' }).end(reason === null ? 'ready\n' : `not ready: ${reason}\n`);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}

export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

export async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
