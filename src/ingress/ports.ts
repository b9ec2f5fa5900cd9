import { createServer, type Server, type Socket } from 'node:net';
import { InvalidArgumentError, Reason } from '../errors.js';
import { formatAddress, parseAddress } from '../id/endpoint.js';
import { RoutingId } from '../id/routing-id.js';
import type { Flow } from '../manager/flow.js';
import { splice } from '../manager/splice.js';
import type { RegistrationHook, RegistrationVerdict } from '../proxy/options.js';
import type { FlowOrigin } from '../tunnel/protocol.js';

/** How a public connection reaches its server: a flow of the ingress's VC to it (IngressDialer.open). */
export type FlowOpener = (rid: RoutingId, origin: FlowOrigin) => Promise<Flow>;

export interface PublicPortsOptions {
  /** The address public ports listen on; default 0.0.0.0. */
  host?: string;
  /** The range registrations may ask ports from, inclusive. */
  from: number;
  to: number;
  /** Public ports one key (routing id) may hold; default 1. */
  maxPerKey?: number;
  /** Connections one public port holds at once; more are closed as they come. Default 1000. */
  maxConnectionsPerPort?: number;
  /** The routing id the ingress opens flows with, which RegisterOk names (docs/protocol.md 10.3). */
  ingressRoutingId?: RoutingId;
}

export const DEFAULT_MAX_PORTS_PER_KEY = 1;
const DEFAULT_MAX_CONNECTIONS_PER_PORT = 1000;
/** Ports tried for one `0` before the registration is refused: a range mostly taken by other programs is the operator's to fix. */
const MAX_LISTEN_ATTEMPTS = 32;

/** `[host:]from-to`, as `proxy start --tcp-ports` takes it. */
export function parsePortRange(text: string, defaultHost = '0.0.0.0'): { host: string; from: number; to: number } {
  const match = /^(?:(.*):)?(\d{1,5})-(\d{1,5})$/.exec(text);
  const from = Number(match?.[2]);
  const to = Number(match?.[3]);
  if (match === null || from < 1 || to > 65535 || from > to) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `invalid port range ${JSON.stringify(text)}: expected [host:]from-to, e.g. 20000-20999, within 1-65535`);
  }
  const host = match[1] === undefined ? defaultHost : parseAddress(`${match[1]}:${from}`, defaultHost).host;
  return { host, from, to };
}

/** One public port while some registration of its routing id holds it. */
class PublicPort {
  readonly holders = new Set<object>();
  readonly sockets = new Set<Socket>();
  readonly ready: Promise<void>;
  private readonly server: Server;
  private closed = false;

  constructor(
    readonly port: number,
    readonly routingId: string,
    host: string,
    maxConnections: number,
    accept: (socket: Socket, port: PublicPort) => void,
  ) {
    // Paused until its flow is open: what the client sends first waits in the kernel, not here.
    this.server = createServer({ pauseOnConnect: true, noDelay: true, allowHalfOpen: true });
    this.server.maxConnections = maxConnections;
    this.server.on('connection', (socket) => {
      socket.on('error', () => undefined);
      if (this.closed) {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      accept(socket, this);
    });
    this.ready = new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.once('listening', () => {
        this.server.off('error', reject);
        // After listening, errors are failed accepts (EMFILE): the listener lives on.
        this.server.on('error', () => undefined);
        resolve();
      });
    });
    // Until `ready` is awaited a failure must not be an unhandled rejection.
    this.ready.catch(() => undefined);
    this.server.listen({ host, port, exclusive: true });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const socket of this.sockets) socket.destroy();
    return this.ready.then(
      () => new Promise<void>((resolve) => this.server.close(() => resolve())),
      () => undefined,
    );
  }
}

/**
 * Public TCP ports, the `ssh -R` model (docs/protocol.md 10.4): a registration asks for ports
 * (RegisterOptions `publicPort`: a number, 0 for any, or a list of them) within the range the
 * operator allows, and the proxy listens there while the registration lives; each connection
 * accepted becomes a flow to the server, announced with an origin message (`via: "tcp"`, the
 * client's address). A key gets at most `maxPerKey` ports; a port is another key's while that
 * key's registration holds it; a key that comes back gets the port it had, when it asks for any
 * port and nobody has taken it since. As a RegistrationHook its verdict is asynchronous: the
 * registration is answered once the ports listen (or could not).
 */
export class PublicPorts implements RegistrationHook {
  readonly host: string;
  readonly from: number;
  readonly to: number;
  readonly maxPerKey: number;
  private readonly maxConnectionsPerPort: number;
  private readonly ingressRoutingId: RoutingId | undefined;
  private readonly byPort = new Map<number, PublicPort>();
  /** The routing id that last held each port: who gets it back first. One entry per port of the range at most. */
  private readonly lastHolder = new Map<number, string>();
  private opener: FlowOpener | undefined;
  private closed = false;

  constructor(options: PublicPortsOptions) {
    this.host = options.host ?? '0.0.0.0';
    this.from = options.from;
    this.to = options.to;
    this.maxPerKey = options.maxPerKey ?? DEFAULT_MAX_PORTS_PER_KEY;
    this.maxConnectionsPerPort = options.maxConnectionsPerPort ?? DEFAULT_MAX_CONNECTIONS_PER_PORT;
    this.ingressRoutingId = options.ingressRoutingId;
    if (!(Number.isInteger(this.from) && Number.isInteger(this.to) && this.from >= 1 && this.from <= this.to && this.to <= 65535)) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `invalid public port range ${this.from}-${this.to}`);
    }
    if (!(Number.isInteger(this.maxPerKey) && this.maxPerKey >= 0)) throw new InvalidArgumentError('ERR_INVALID_OPTION', `maxPerKey must be a whole number, got ${this.maxPerKey}`);
  }

  /** Where connections go from now on; until then a connection to a public port is closed at once. */
  attach(open: FlowOpener): void {
    this.opener = open;
  }

  get range(): string {
    return `${this.from}-${this.to}`;
  }

  /** The ports `routingId` holds now. */
  portsOf(routingId: string): number[] {
    return [...this.byPort.values()].filter((p) => p.routingId === routingId).map((p) => p.port);
  }

  register(routingId: string, options: Record<string, unknown>, registration: object): RegistrationVerdict | Promise<RegistrationVerdict> {
    if (options.publicPort === undefined) return { document: {} };
    const asked = requestedPorts(options.publicPort);
    if (typeof asked === 'string') return refused(Reason.Refused, asked);
    if (this.closed) return refused(Reason.GoingAway, 'the proxy is shutting down');
    if (asked.length > this.maxPerKey) {
      return refused(Reason.Limit, `asked for ${asked.length} public ports; this proxy allows ${this.maxPerKey} per key (proxy start --max-ports-per-key)`);
    }
    const explicit = asked.filter((port) => port !== 0);
    if (new Set(explicit).size !== explicit.length) return refused(Reason.Refused, 'the same public port was asked for twice');
    for (const port of explicit) {
      if (port < this.from || port > this.to) return refused(Reason.Refused, `public port ${port} is outside the range this proxy allows (${this.range})`);
      const holder = this.byPort.get(port);
      if (holder !== undefined && holder.routingId !== routingId) return refused(Reason.Refused, `public port ${port} is in use by another server`);
    }
    return this.assign(routingId, asked, registration);
  }

  released(routingId: string, registration: object): void {
    for (const port of [...this.byPort.values()]) {
      if (port.routingId === routingId) this.drop(port, registration);
    }
  }

  /** Closes every public port and what came through them. */
  async close(): Promise<void> {
    this.closed = true;
    const ports = [...this.byPort.values()];
    this.byPort.clear();
    await Promise.all(ports.map((port) => port.close()));
  }

  /** Takes the ports asked for (explicit ones first, then one for each 0), reusing this key's own. */
  private async assign(routingId: string, asked: number[], registration: object): Promise<RegistrationVerdict> {
    const taken: PublicPort[] = [];
    const own = [...this.byPort.values()].filter((p) => p.routingId === routingId);
    try {
      for (const port of asked.filter((p) => p !== 0)) {
        const existing = this.byPort.get(port);
        // Checked again: while an earlier port was opening, another server may have taken this one.
        if (existing !== undefined && existing.routingId !== routingId) throw new PortRefusal(Reason.Refused, `public port ${port} is in use by another server`);
        const held = existing ?? this.open(port, routingId);
        held.holders.add(registration);
        taken.push(held);
        try {
          await held.ready;
        } catch (err) {
          throw new PortRefusal(Reason.Refused, `public port ${port} is in use on the proxy's host (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        }
      }
      for (let i = asked.filter((p) => p === 0).length; i > 0; i--) taken.push(await this.any(routingId, own, taken, registration));
    } catch (err) {
      for (const port of taken) this.drop(port, registration);
      if (err instanceof PortRefusal) return refused(err.reason, err.message);
      throw err;
    }
    if (this.closed) {
      for (const port of taken) this.drop(port, registration);
      return refused(Reason.GoingAway, 'the proxy is shutting down');
    }
    // A registration asking again (on the same connection) lets go of what it no longer asks for;
    // ports an older registration of this key held go when that one is released.
    for (const port of own) if (!taken.includes(port) && port.holders.has(registration)) this.drop(port, registration);
    return {
      document: {
        tcp: taken.map((port) => formatAddress(this.host, port.port)),
        ...(this.ingressRoutingId !== undefined && { ingress: this.ingressRoutingId.toString() }),
      },
    };
  }

  /** A port for a `0`: one this key holds and did not take yet, the one it last had, then a free one; listening. */
  private async any(routingId: string, own: PublicPort[], taken: PublicPort[], registration: object): Promise<PublicPort> {
    for (const port of own) {
      if (taken.includes(port) || this.byPort.get(port.port) !== port) continue;
      port.holders.add(registration);
      try {
        await port.ready;
        return port;
      } catch {
        this.drop(port, registration);
      }
    }
    let attempts = 0;
    for (const candidate of this.candidates(routingId)) {
      if (attempts++ === MAX_LISTEN_ATTEMPTS) break;
      if (this.byPort.has(candidate)) continue;
      const port = this.open(candidate, routingId);
      port.holders.add(registration);
      try {
        await port.ready;
        return port;
      } catch {
        // Another program has it: try the next one.
        port.holders.delete(registration);
        this.drop(port, registration);
      }
    }
    throw new PortRefusal(Reason.Limit, `no public port is free in the range this proxy allows (${this.range})`);
  }

  /** Free ports of the range in the order a `0` tries them: this key's last, ports nobody had, then ones another key had. */
  private *candidates(routingId: string): Generator<number> {
    for (const [port, holder] of this.lastHolder) if (holder === routingId && !this.byPort.has(port)) yield port;
    const others: number[] = [];
    for (let port = this.from; port <= this.to; port++) {
      if (this.byPort.has(port)) continue;
      const holder = this.lastHolder.get(port);
      if (holder === undefined) yield port;
      else if (holder !== routingId && others.length < MAX_LISTEN_ATTEMPTS) others.push(port);
    }
    yield* others;
  }

  private open(port: number, routingId: string): PublicPort {
    const listener = new PublicPort(port, routingId, this.host, this.maxConnectionsPerPort, (socket, at) => this.accept(socket, at));
    this.byPort.set(port, listener);
    void listener.ready.then(
      () => this.lastHolder.set(port, routingId),
      () => undefined,
    );
    return listener;
  }

  /** `registration` lets go of `port`; the last holder to let go closes it. */
  private drop(port: PublicPort, registration: object): void {
    port.holders.delete(registration);
    if (port.holders.size > 0) return;
    if (this.byPort.get(port.port) === port) this.byPort.delete(port.port);
    void port.close();
  }

  private accept(socket: Socket, port: PublicPort): void {
    const open = this.opener;
    if (open === undefined) {
      socket.destroy();
      return;
    }
    const client = socket.remoteAddress === undefined ? 'unknown' : formatAddress(socket.remoteAddress, socket.remotePort ?? 0);
    open(RoutingId.parse(port.routingId), { via: 'tcp', client }).then(
      (flow) => {
        if (socket.destroyed) {
          flow.destroy();
          return;
        }
        void splice(socket, flow);
      },
      () => socket.destroy(),
    );
  }
}

class PortRefusal extends Error {
  constructor(
    readonly reason: Reason,
    message: string,
  ) {
    super(message);
  }
}

function refused(reason: Reason, message: string): RegistrationVerdict {
  return { refused: { reason, message } };
}

/** RegisterOptions `publicPort` as a list of port numbers, or what is wrong with it. */
function requestedPorts(value: unknown): number[] | string {
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  if (list.length === 0 || list.length > 64) return 'publicPort must be a port number (0 for any) or a list of 1 to 64 of them';
  for (const port of list) {
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) return `publicPort ${JSON.stringify(port)} is not a port number (0 for any, else 1-65535)`;
  }
  return list as number[];
}
