import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { cannotListen } from '../errors.js';
import type { Proxy, ProxyStats } from '../proxy/proxy.js';
import type { Logger } from './logger.js';

/**
 * The proxy's Prometheus metrics, in a registry of their own with prom-client's default process
 * metrics (CPU, memory, event-loop lag). Counts of events (registrations, VCs, refusals) come from
 * the proxy's events; the rest is read from `proxy.stats()` once per scrape. No label carries a
 * routing id or an address, so the number of series stays fixed whatever the traffic.
 */
export function proxyMetrics(proxy: Proxy, limits: { bufferBudget: number }): { registry: Registry; scrape(): Promise<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  let stats: ProxyStats = proxy.stats();
  const gauge = (name: string, help: string, value: (s: ProxyStats) => number): void => {
    new Gauge({ name, help, registers, collect() { this.set(value(stats)); } });
  };
  const total = (name: string, help: string, value: (s: ProxyStats) => number): void => {
    new Counter({ name, help, registers, collect() { this.reset(); this.inc(value(stats)); } });
  };
  gauge('ridproxy_connections', 'Hop connections open (handshake done).', (s) => s.connections);
  gauge('ridproxy_registrations', 'Routing ids registered now.', (s) => s.registrations);
  gauge('ridproxy_vcs_open', 'VCs open now (accepted or awaiting acceptance).', (s) => s.vcs);
  gauge('ridproxy_reserved_bytes', 'Window bytes committed to open VCs: the buffer budget in use.', (s) => s.reservedBytes);
  gauge('ridproxy_buffer_budget_bytes', 'The buffer budget (--buffer-budget): the most reserved_bytes may reach.', () => limits.bufferBudget);
  gauge('ridproxy_queued_bytes', 'Bytes held in VC queues: received, waiting for the receiver\'s credit or socket.', (s) => s.queuedBytes);
  gauge('ridproxy_socket_buffered_bytes', 'Bytes written to hop sockets that the kernel has not taken yet.', (s) => s.bufferedBytes);
  total('ridproxy_protocol_errors_total', 'Connections ended for breaking the protocol.', (s) => s.protocolErrors);
  new Counter({
    name: 'ridproxy_forwarded_bytes_total',
    help: 'VC payload bytes forwarded, by direction: to the server (the VC\'s acceptor) or to the client (its opener).',
    labelNames: ['direction'],
    registers,
    collect() {
      this.reset();
      this.inc({ direction: 'to_server' }, stats.bytesToServers);
      this.inc({ direction: 'to_client' }, stats.bytesToClients);
    },
  });

  const registrations = new Counter({ name: 'ridproxy_registrations_total', help: 'Registrations accepted (a superseding one included).', registers });
  const vcsOpened = new Counter({ name: 'ridproxy_vcs_opened_total', help: 'VCs the server accepted.', registers });
  const vcsClosed = new Counter({
    name: 'ridproxy_vcs_closed_total',
    help: 'VCs ended, by outcome (the close\'s error code: ERR_CLOSED for a clean close) and whether the server had accepted them.',
    labelNames: ['outcome', 'accepted'],
    registers,
  });
  const refusals = new Counter({
    name: 'ridproxy_refusals_total',
    help: 'Refusals, by kind (connection, handshake, registration, vc, status) and code.',
    labelNames: ['kind', 'code'],
    registers,
  });
  const handshakeFailures = new Counter({ name: 'ridproxy_handshake_failures_total', help: 'Handshakes that failed, by code.', labelNames: ['code'], registers });
  proxy.on('registered', () => registrations.inc());
  proxy.on('vcOpened', () => vcsOpened.inc());
  proxy.on('vcClosed', (event) => vcsClosed.inc({ outcome: event.code, accepted: String(event.accepted) }));
  proxy.on('refused', (event) => {
    refusals.inc({ kind: event.kind, code: event.code });
    if (event.kind === 'handshake') handshakeFailures.inc({ code: event.code });
  });

  return {
    registry,
    scrape(): Promise<string> {
      stats = proxy.stats();
      return registry.metrics();
    },
  };
}

/**
 * An HTTP server for Prometheus: GET /metrics (the text format) and GET /healthz (200 "ok"
 * while `healthy()`, else 503). Anything else gets 404 or 405; a malformed request gets 400 and
 * never reaches the process's error path.
 */
export async function serveMetrics(host: string, port: number, scrape: () => Promise<string>, contentType: string, healthy: () => boolean, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    } else if (path === '/metrics') {
      scrape().then(
        (text) => res.writeHead(200, { 'content-type': contentType }).end(text),
        (err: Error) => {
          log.error({ reason: err.message }, 'collecting metrics failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
        },
      );
    } else if (path === '/healthz') {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not listening\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxConnections = 64;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
    else socket.destroy();
  });
  server.listen({ host, port });
  try {
    await once(server, 'listening');
  } catch (err) {
    throw cannotListen(host, port, err);
  }
  // After listening, errors are failed accepts (EMFILE): logged, and the server lives on.
  server.on('error', (err) => log.warn({ reason: err.message }, 'metrics server error'));
  return server;
}
