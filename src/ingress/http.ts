import { STATUS_CODES, createServer as createHttpServer, request, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { formatAddress } from '../id/endpoint.js';
import type { Flow } from '../manager/flow.js';
import { splice } from '../manager/splice.js';
import type { IngressDialer } from './dialer.js';
import { listenOn } from './listen.js';
import type { NameDirectory } from './names.js';
import type { TlsTermination } from '../tunnel/tls-termination.js';

export interface HttpIngressOptions {
  /** Keep the X-Forwarded-* and Forwarded headers a request arrives with (only behind a load balancer you trust); default: replace them. */
  trustForwarded?: boolean;
  /** Largest request head, in bytes; a larger one is answered 431. Default 16 KiB. */
  maxHeaderSize?: number;
  /** Milliseconds a client has to send a request's head. Default 10 s. */
  headersTimeout?: number;
  /** Milliseconds a connection may stay silent (between requests, or mid-body) before it is closed. Default 60 s. */
  idleTimeout?: number;
  /**
   * Terminate TLS here with this certificate (`proxy start --https`): the listener speaks HTTPS,
   * and the proxy sees every request in plaintext before it carries it, encrypted again, to the
   * server. Without it the listener is plain HTTP.
   */
  tls?: TlsTermination;
}

/** Milliseconds a client has to finish its TLS handshake with an HTTPS listener. */
const TLS_HANDSHAKE_TIMEOUT = 10_000;

/** Connection-level headers (RFC 9110 7.6.1): they describe one hop, so they never cross the proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);
const FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'];

/**
 * The proxy's public HTTP/1.1 listener: each request is routed by its Host to the server
 * registered under that name (names.ts) and carried there as a flow of a VC that the proxy opens
 * as a client (dialer.ts), so the server's `serve --forward` speaks to its local service as for
 * any client. Requests and responses stream both ways with backpressure; Upgrade requests
 * (WebSocket) become a raw byte pipe after the service's 101.
 */
export class HttpIngress {
  private constructor(
    private readonly server: Server | HttpsServer,
    readonly host: string,
    readonly port: number,
    private readonly tls: TlsTermination | undefined,
  ) {}

  static async listen(host: string, port: number, names: NameDirectory, dialer: IngressDialer, options: HttpIngressOptions = {}): Promise<HttpIngress> {
    const limits = { maxHeaderSize: options.maxHeaderSize ?? 16 * 1024, requestTimeout: 0, headersTimeout: options.headersTimeout ?? 10_000 };
    const { tls } = options;
    const server = tls === undefined ? createHttpServer(limits) : createHttpsServer({ ...limits, ...tls.credentials, handshakeTimeout: TLS_HANDSHAKE_TIMEOUT });
    // A failed TLS handshake (a scanner, a client that distrusts the certificate) is that client's alone.
    if (tls !== undefined) server.on('tlsClientError', (_err: Error, socket: Socket) => socket.destroy());
    server.keepAliveTimeout = 5_000;
    server.setTimeout(options.idleTimeout ?? 60_000, (socket: Socket) => socket.destroy());
    const route = new Router(names, dialer, options.trustForwarded ?? false, tls === undefined ? 'http' : 'https');
    server.on('request', (req: IncomingMessage, res: ServerResponse) => void route.request(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => void route.upgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      // Node's codes: HPE_HEADER_OVERFLOW past maxHeaderSize, a *_TIMEOUT one past headersTimeout.
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : /TIMEOUT/.test(err.code ?? '') ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${status}\n`);
    });
    const boundPort = await listenOn(server, host, port);
    return new HttpIngress(server, host, boundPort, tls);
  }

  /** Puts the certificate the TLS termination holds now (after its reload) in use for new connections. */
  useReloadedCertificate(): void {
    if (this.tls !== undefined && 'setSecureContext' in this.server) this.server.setSecureContext(this.tls.credentials);
  }

  get address(): string {
    return formatAddress(this.host, this.port);
  }

  /** Stops accepting and drops the connections still open. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Why a request cannot reach a service: the status and the page that says so. */
class Refusal {
  constructor(
    readonly status: number,
    readonly message: string,
  ) {}
}

class Router {
  constructor(
    private readonly names: NameDirectory,
    private readonly dialer: IngressDialer,
    private readonly trustForwarded: boolean,
    private readonly proto: 'http' | 'https',
  ) {}

  async request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const flow = await this.open(req);
    if (flow instanceof Refusal) {
      if (!res.headersSent) res.writeHead(flow.status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
      res.end(`${flow.message}\n`);
      req.resume();
      return;
    }
    const upstream = request({
      method: req.method,
      path: req.url,
      headers: this.forwardedHeaders(req, false),
      setHost: false,
      createConnection: () => flow,
    });
    upstream.on('error', (err) => {
      flow.destroy();
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
        res.end(`the service failed: ${err.message}\n`);
      } else {
        res.destroy();
      }
    });
    upstream.on('response', (answer: IncomingMessage) => {
      answer.on('error', () => res.destroy());
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.headers));
      answer.pipe(res);
    });
    // A client that goes away mid-request or mid-response takes its flow with it.
    res.on('close', () => {
      if (!res.writableFinished) {
        upstream.destroy();
        flow.destroy();
      }
    });
    req.pipe(upstream);
  }

  async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    socket.on('error', () => undefined);
    const flow = await this.open(req);
    if (flow instanceof Refusal) {
      socket.end(`HTTP/1.1 ${flow.status} ${STATUS_CODES[flow.status]}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\n${flow.message}\n`);
      return;
    }
    // The service answers the upgrade itself (101 or a refusal); from here on the bytes are its protocol's.
    const headers = this.forwardedHeaders(req, true);
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (const [name, value] of Object.entries(headers)) {
      for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${String(v)}`);
    }
    flow.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) flow.write(head);
    await splice(socket, flow);
  }

  /** The flow to the service `req` is for, past the serve's opening message; a Refusal when there is none. */
  private async open(req: IncomingMessage): Promise<Flow | Refusal> {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (host.length === 0) return new Refusal(400, 'the request has no Host header');
    const target = this.names.resolve(host);
    if (target === undefined) return new Refusal(404, `no service is registered as ${host} (this proxy serves *.${this.names.domain})`);
    if (!this.dialer.isConnected(target.routingId)) return new Refusal(502, `${host} is not connected to the proxy right now`);
    try {
      return await this.dialer.open(target.routingId, { via: 'http', client: clientAddress(req.socket), host });
    } catch (err) {
      return new Refusal(502, `cannot reach the service: ${(err as Error).message}`);
    }
  }

  /** The request's headers for the service: hop-by-hop ones dropped, the forwarding ones set by this proxy. */
  private forwardedHeaders(req: IncomingMessage, upgrade: boolean): OutgoingHttpHeaders {
    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      if (!this.trustForwarded && FORWARDING.includes(name)) continue;
      headers[name] = value;
    }
    const ip = req.socket.remoteAddress ?? 'unknown';
    const host = req.headers.host ?? '';
    const prior = this.trustForwarded ? req.headers['x-forwarded-for'] : undefined;
    headers['x-forwarded-for'] = prior ? `${String(prior)}, ${ip}` : ip;
    headers['x-forwarded-proto'] = this.proto;
    headers['x-forwarded-host'] = host;
    const node = ip.includes(':') ? `"[${ip}]"` : ip;
    const forwarded = `for=${node};host="${host.replace(/["\\]/g, '')}";proto=${this.proto}`;
    const priorForwarded = this.trustForwarded ? req.headers.forwarded : undefined;
    headers.forwarded = priorForwarded ? `${priorForwarded}, ${forwarded}` : forwarded;
    if (upgrade) {
      headers.connection = 'Upgrade';
      if (req.headers.upgrade !== undefined) headers.upgrade = req.headers.upgrade;
    } else {
      // One request per flow: the service closes after its answer, and nothing waits on a keep-alive.
      headers.connection = 'close';
    }
    return headers;
  }
}

/** A response's headers without the hop-by-hop ones; Node frames the body for the client itself. */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

function clientAddress(socket: Socket): string {
  return socket.remoteAddress === undefined ? 'unknown' : formatAddress(socket.remoteAddress, socket.remotePort ?? 0);
}
