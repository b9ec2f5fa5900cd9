import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { formatAddress } from '../id/endpoint.js';
import type { Flow } from '../manager/flow.js';
import { splice } from '../manager/splice.js';
import type { IngressDialer } from './dialer.js';
import { listenOn } from './listen.js';
import type { NameDirectory } from './names.js';
import { ClientHelloReader, DEFAULT_MAX_HELLO_BYTES, TlsAlert, alertRecord } from './sni.js';

export interface TlsPassthroughOptions {
  /** Milliseconds a client has to send its whole ClientHello. Default 10 s. */
  helloTimeout?: number;
  /** Bytes a ClientHello may take, record headers included. Default 16 KiB. */
  maxHelloBytes?: number;
  /** Connections held at once, ClientHello still coming or carried; more are closed as they come. Default 10,000. */
  maxConnections?: number;
}

/** A connection the ingress turned away, for the proxy's log. */
export interface TlsRefusal {
  client: string;
  host?: string;
  reason: string;
  /** The TLS alert sent (RFC 8446 6.2), if one was. */
  alert?: number;
}

/** Milliseconds a refused client has to read its alert and close before its socket is dropped. */
const REFUSAL_LINGER = 2000;

/**
 * Blind HTTPS: the proxy's public TLS listener reads the server name (SNI) of each connection's
 * ClientHello (sni.ts), and nothing else, and carries the whole connection, ClientHello included,
 * to the server registered under that name in the ingress's domain, as a flow the ingress opens
 * like any client (dialer.ts, origin `via: "tls"`). The server terminates TLS itself (`serve
 * --tls-cert`) or its local service does, so the proxy holds no certificate and never sees a byte
 * of plaintext. A ClientHello with no server name, one for a host not routed here, one that is
 * malformed or larger than the bound, or none within the timeout, is refused with a fatal alert
 * (or closed, when the bytes are not TLS at all).
 */
export class TlsPassthroughIngress extends EventEmitter<{ refused: [TlsRefusal] }> {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
  ) {
    super();
  }

  static async listen(host: string, port: number, names: NameDirectory, dialer: IngressDialer, options: TlsPassthroughOptions = {}): Promise<TlsPassthroughIngress> {
    const server = createServer({ noDelay: true, allowHalfOpen: true });
    server.maxConnections = options.maxConnections ?? 10_000;
    const boundPort = await listenOn(server, host, port);
    const ingress = new TlsPassthroughIngress(server, host, boundPort);
    const timeout = options.helloTimeout ?? 10_000;
    const maxBytes = options.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
    server.on('connection', (socket: Socket) => ingress.accept(socket, names, dialer, timeout, maxBytes));
    return ingress;
  }

  get address(): string {
    return formatAddress(this.host, this.port);
  }

  /** Stops accepting and drops the connections still open. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private accept(socket: Socket, names: NameDirectory, dialer: IngressDialer, timeout: number, maxBytes: number): void {
    socket.on('error', () => undefined);
    this.sockets.add(socket);
    const client = socket.remoteAddress === undefined ? 'unknown' : formatAddress(socket.remoteAddress, socket.remotePort ?? 0);
    const reader = new ClientHelloReader(maxBytes);
    const received: Buffer[] = [];
    const timer = setTimeout(() => this.refuse(socket, { client, reason: `no complete ClientHello within ${timeout} ms` }), timeout);
    const stop = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    socket.once('close', () => {
      stop();
      this.sockets.delete(socket);
    });
    const onEnd = (): void => {
      stop();
      socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      received.push(chunk);
      const result = reader.push(chunk);
      if (result.kind === 'more') return;
      stop();
      socket.pause();
      if (result.kind === 'invalid') {
        this.refuse(socket, { client, reason: result.problem, ...(result.alert !== undefined && { alert: result.alert }) });
        return;
      }
      void this.route(socket, client, result.serverName, received, names, dialer);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  private async route(socket: Socket, client: string, host: string | undefined, received: Buffer[], names: NameDirectory, dialer: IngressDialer): Promise<void> {
    if (host === undefined) {
      this.refuse(socket, { client, reason: 'the ClientHello names no server (SNI)', alert: TlsAlert.MissingExtension });
      return;
    }
    const target = names.resolve(host);
    if (target === undefined) {
      this.refuse(socket, { client, host, reason: `no service is registered as ${host} (this proxy serves *.${names.domain})`, alert: TlsAlert.UnrecognizedName });
      return;
    }
    if (!dialer.isConnected(target.routingId)) {
      this.refuse(socket, { client, host, reason: `${host} is not connected to the proxy right now`, alert: TlsAlert.UnrecognizedName });
      return;
    }
    let flow: Flow;
    try {
      flow = await dialer.open(target.routingId, { via: 'tls', client, host });
    } catch (err) {
      this.refuse(socket, { client, host, reason: `cannot reach the service: ${(err as Error).message}`, alert: TlsAlert.InternalError });
      return;
    }
    if (socket.destroyed) {
      flow.destroy();
      return;
    }
    // The bytes read so far, ClientHello and whatever came with it, then the rest as it comes.
    for (const chunk of received.splice(0)) flow.write(chunk);
    await splice(socket, flow);
  }

  /** Sends the alert (if any), closes, and drops the socket if the client does not close its side soon. */
  private refuse(socket: Socket, refusal: TlsRefusal): void {
    this.emit('refused', refusal);
    if (socket.destroyed) return;
    if (refusal.alert === undefined) {
      socket.destroy();
      return;
    }
    socket.end(alertRecord(refusal.alert));
    // Read and drop what else comes: closing with unread bytes would reset the connection before the alert is read.
    socket.on('data', () => undefined);
    socket.resume();
    const linger = setTimeout(() => socket.destroy(), REFUSAL_LINGER);
    socket.once('close', () => clearTimeout(linger));
  }
}
