import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { cannotListen } from '../errors.js';
import { formatAddress } from '../id/endpoint.js';
import type { Proxy, ProxyStats } from '../proxy/proxy.js';
import type { Logger } from './logger.js';

/**
 * The proxy's Prometheus metrics, in a registry of their own with prom-client's default process
 * metrics (CPU, memory, event-loop lag). Counts of events (registrations, VCs, refusals) come from
 * the proxy's events; the rest is read from `proxy.stats()` once per scrape. No label carries a
 * routing id or an address, so the number of series stays fixed whatever the traffic.
 */
export function proxyMetrics(proxy: Proxy, options: { bufferBudget: number; perRoutingId?: boolean }): { registry: Registry; scrape(): Promise<string> } {
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
  gauge('ridproxy_handshakes_in_progress', 'Hop handshakes the proxy is working on now (at most --max-handshakes).', (s) => s.handshakesInProgress);
  gauge('ridproxy_handshakes_queued', 'Accepted connections waiting for a handshake slot (--max-handshakes).', (s) => s.handshakesQueued);
  gauge('ridproxy_vcs_open', 'VCs open now (accepted or awaiting acceptance).', (s) => s.vcs);
  gauge('ridproxy_reserved_bytes', 'Window bytes committed to open VCs: the buffer budget in use.', (s) => s.reservedBytes);
  gauge('ridproxy_buffer_budget_bytes', 'The buffer budget (--buffer-budget): the most reserved_bytes may reach.', () => options.bufferBudget);
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
  if (options.perRoutingId) perRoutingIdBytes(proxy, registers);
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

/** How long the bytes of a routing id that is no longer registered stay in its series, so a server that reconnects keeps counting up. */
const RETIRED_SERIES_MS = 10 * 60_000;

/**
 * The opt-in `ridproxy_server_bytes_total{routing_id, direction}`: what each registered server
 * sent and received, over all its registrations. One series per routing id and direction, which
 * is why it is off by default; a routing id unregistered for RETIRED_SERIES_MS drops out.
 */
function perRoutingIdBytes(proxy: Proxy, registers: Registry[]): void {
  const retired = new Map<string, { sent: number; received: number; at: number }>();
  proxy.on('unregistered', (event) => {
    const earlier = retired.get(event.routingId);
    retired.set(event.routingId, { sent: (earlier?.sent ?? 0) + event.bytesSent, received: (earlier?.received ?? 0) + event.bytesReceived, at: Date.now() });
  });
  new Counter({
    name: 'ridproxy_server_bytes_total',
    help: 'Payload bytes each registered server sent and received through the proxy, by routing id (--metrics-per-rid).',
    labelNames: ['routing_id', 'direction'],
    registers,
    collect() {
      this.reset();
      const now = Date.now();
      const live = new Map([...proxy.servers()].map((server) => [server.routingId, server]));
      for (const [routingId, earlier] of retired) {
        if (!live.has(routingId) && now - earlier.at > RETIRED_SERIES_MS) retired.delete(routingId);
      }
      for (const routingId of new Set([...live.keys(), ...retired.keys()])) {
        const server = live.get(routingId);
        const earlier = retired.get(routingId);
        this.inc({ routing_id: routingId, direction: 'sent' }, (server?.bytesSent ?? 0) + (earlier?.sent ?? 0));
        this.inc({ routing_id: routingId, direction: 'received' }, (server?.bytesReceived ?? 0) + (earlier?.received ?? 0));
      }
    },
  });
}

/**
 * The metrics of `serve` and `connect`, which carry local TCP connections as flows: how many are
 * open, how each ended, the bytes each way (counted on the local sockets, open ones included),
 * plus what the command adds with `gauge`/`counter` and prom-client's process metrics.
 */
export class TunnelMetrics {
  readonly registry = new Registry();
  private readonly open = new Set<Socket>();
  private finished = { toPeer: 0, fromPeer: 0 };
  private readonly outcomes: Counter<'outcome'>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.outcomes = new Counter({
      name: 'ridproxy_tunnel_connections_total',
      help: 'Local TCP connections carried as flows, by outcome: ok, or the error code that ended or refused it.',
      labelNames: ['outcome'],
      registers,
    });
    const open = this.open;
    const finished = (): { toPeer: number; fromPeer: number } => this.finished;
    new Gauge({ name: 'ridproxy_tunnel_connections', help: 'Local TCP connections being carried now.', registers, collect() { this.set(open.size); } });
    new Counter({
      name: 'ridproxy_tunnel_bytes_total',
      help: 'Bytes carried, by direction: to_peer (read from the local socket) and from_peer (written to it).',
      labelNames: ['direction'],
      registers,
      collect() {
        this.reset();
        let toPeer = finished().toPeer;
        let fromPeer = finished().fromPeer;
        for (const socket of open) {
          toPeer += socket.bytesRead;
          fromPeer += socket.bytesWritten;
        }
        this.inc({ direction: 'to_peer' }, toPeer);
        this.inc({ direction: 'from_peer' }, fromPeer);
      },
    });
  }

  /** A local connection now carried; the returned function records how it ended. */
  carry(socket: Socket): (outcome: string) => void {
    this.open.add(socket);
    let done = false;
    return (outcome) => {
      if (done) return;
      done = true;
      this.open.delete(socket);
      this.finished.toPeer += socket.bytesRead;
      this.finished.fromPeer += socket.bytesWritten;
      this.outcomes.inc({ outcome });
    };
  }

  /** A local connection that never became a flow (the dial or the service failed). */
  refused(code: string): void {
    this.outcomes.inc({ outcome: code });
  }

  gauge(name: string, help: string, value: () => number): void {
    new Gauge({ name, help, registers: [this.registry], collect() { this.set(value()); } });
  }

  counter(name: string, help: string): Counter {
    return new Counter({ name, help, registers: [this.registry] });
  }

  scrape(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Serves metrics at `address` (see serveMetrics), says where in the log, and gives a function that stops serving them. */
export async function exposeMetrics(
  address: { host: string; port: number },
  scrape: () => Promise<string>,
  contentType: string,
  healthy: () => boolean,
  log: Logger,
): Promise<() => void> {
  const server = await serveMetrics(address.host, address.port, scrape, contentType, healthy, log);
  // With port 0 the log line is the only place the chosen port can be read from.
  const { port } = server.address() as AddressInfo;
  log.info({ metrics: `http://${formatAddress(address.host, port)}/metrics` }, 'serving metrics');
  return () => {
    server.close();
    server.closeAllConnections();
  };
}

/**
 * An HTTP server for Prometheus: GET /metrics (the text format) and GET /healthz (200 "ok"
 * while `healthy()`, else 503). Anything else gets 404 or 405; a malformed request gets 400 and
 * never reaches the process's error path.
 */
async function serveMetrics(host: string, port: number, scrape: () => Promise<string>, contentType: string, healthy: () => boolean, log: Logger): Promise<Server> {
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
