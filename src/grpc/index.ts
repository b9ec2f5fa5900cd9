import { AsyncLocalStorage } from 'node:async_hooks';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';
import { InvalidArgumentError, ManagerError, UnreachableError, type RidproxyError } from '../errors.js';
import { Endpoint, parseAddress } from '../id/endpoint.js';
import { RoutingId } from '../id/routing-id.js';
import type { Flow } from '../manager/flow.js';
import type { DialOptions, Manager } from '../manager/manager.js';
import type { PeerIdentity } from '../secure/index.js';
import { splice } from '../manager/splice.js';

/** Whom a client-side helper reaches: an endpoint to dial, or (with `reuseOnly`) a peer already connected. */
export type Destination = string | Endpoint | RoutingId;

export interface ServeGrpcOptions {
  /**
   * Credentials of the HTTP/2 connection inside each flow. Insecure (h2c) by default: the VC
   * already encrypts and authenticates both ends, so TLS again would only cost CPU.
   */
  credentials?: ServerCredentials;
}

export interface GrpcServingCloseOptions {
  /** Milliseconds the calls in progress get to finish before their flows are reset. Default 5000. */
  drainTimeout?: number;
}

export interface GrpcServing {
  /** Settles when no more flows are taken: after close(), the manager's close() or stopListening(). */
  readonly done: Promise<void>;
  /**
   * Stops taking flows and closes the HTTP/2 sessions already served gracefully (a GOAWAY: calls
   * in progress may finish, the client starts none there). Calls still running after
   * `drainTimeout` have their flows reset: their clients see UNAVAILABLE, their handlers
   * 'cancelled'. Resolves once every flow served is closed.
   */
  close(options?: GrpcServingCloseOptions): Promise<void>;
}

const DEFAULT_DRAIN_TIMEOUT = 5_000;

/**
 * Serves every flow the manager accepts as one HTTP/2 connection of `server`. That includes flows
 * a peer opens back on a VC this manager dialed, which is how an agent that listens nowhere
 * serves the hub it dialed (a reverse tunnel). The server needs no bindAsync.
 */
export function serveGrpc(manager: Manager, server: GrpcServer, options: ServeGrpcOptions = {}): GrpcServing {
  const injector = server.createConnectionInjector(options.credentials ?? ServerCredentials.createInsecure());
  const stop = new AbortController();
  const served = new Set<Flow>();
  const done = (async () => {
    for (;;) {
      let flow: Flow;
      try {
        flow = await manager.accept({ signal: stop.signal });
      } catch {
        // Aborted by close(), or the manager stopped listening or closed: as `for await` over it does, stop.
        return;
      }
      served.add(flow);
      flow.once('close', () => served.delete(flow));
      injectAsCaller(injector, flow);
    }
  })();
  let closing: Promise<void> | undefined;
  return {
    done,
    close(closeOptions = {}) {
      const drainTimeout = closeOptions.drainTimeout ?? DEFAULT_DRAIN_TIMEOUT;
      if (!(Number.isFinite(drainTimeout) && drainTimeout >= 0)) {
        return Promise.reject(new InvalidArgumentError('ERR_INVALID_OPTION', `close option drainTimeout must be a number of ms, 0 or more, got ${drainTimeout}`));
      }
      closing ??= (async () => {
        stop.abort();
        // Stops the HTTP/2 server and sends each session a GOAWAY; a session closes its flow once its last stream is done.
        injector.destroy();
        await done;
        const allClosed = (): Promise<unknown> => Promise.all([...served].map((flow) => new Promise((resolve) => flow.once('close', resolve))));
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), drainTimeout);
        });
        const timedOut = await Promise.race([allClosed().then(() => false), expired]);
        clearTimeout(timer);
        if (timedOut) {
          const left = allClosed();
          for (const flow of served) flow.destroy();
          await left;
        }
      })();
      return closing;
    },
  };
}

const callers = new AsyncLocalStorage<PeerIdentity>();

/**
 * The peer whose flow carries the gRPC call being handled: its routing ID and public key as the
 * VC authenticated them (end to end; with `encryption: false`, as the proxy vouched for them),
 * never anything the caller sent. Undefined outside a call that serveGrpc (or serveGrpcReverse)
 * handed to the server, such as calls on a port of the server's own bindAsync.
 *
 * It is carried by AsyncLocalStorage: call it in the handler or in anything the handler runs,
 * awaits or schedules (promises, timers, the call's own events), not from callbacks that another
 * context set up before the call.
 */
export function grpcCaller(): PeerIdentity | undefined {
  const caller = callers.getStore();
  return caller === undefined ? undefined : { publicKey: Buffer.from(caller.publicKey), routingId: caller.routingId };
}

/**
 * Hands the flow to grpc-js so that everything done on its behalf runs with the flow's peer as
 * grpcCaller(). The connection, its HTTP/2 session and TLS socket are made here, but node:http2
 * makes each stream's handle while it parses bytes, in whatever context delivers them: so every
 * event of the flow (its data above all) is emitted in the caller's context too.
 */
function injectAsCaller(injector: ReturnType<GrpcServer['createConnectionInjector']>, flow: Flow): void {
  const caller: PeerIdentity = { publicKey: Buffer.from(flow.remotePublicKey), routingId: flow.conn.remoteRoutingId };
  const emit = flow.emit;
  flow.emit = function emitAsCaller(this: Flow, ...args: Parameters<Flow['emit']>): boolean {
    return callers.run(caller, () => emit.apply(this, args));
  } as Flow['emit'];
  callers.run(caller, () => injector.injectConnection(flow));
}

export type { PeerIdentity };

export interface GrpcBridgeOptions extends DialOptions {
  /**
   * Open flows only over a VC that already exists (`manager.dialCached`), never dial: what a hub
   * uses to call an agent that dialed it. The destination may then be a bare RoutingId.
   */
  reuseOnly?: boolean;
  /** Listen on this TCP address ("127.0.0.1:0" picks a port) instead of a Unix socket in a fresh temporary directory. */
  listen?: string;
}

export interface GrpcBridgeEvents {
  /** A local connection was dropped because no flow could be opened for it; the gRPC client sees only UNAVAILABLE. */
  dialError: [err: RidproxyError];
}

/**
 * A local address for clients that take only a target string, such as grpc-js channels: every
 * connection accepted there is carried over its own flow to the destination.
 */
export class GrpcBridge extends EventEmitter<GrpcBridgeEvents> {
  private readonly sockets = new Set<Socket>();
  private closing: Promise<void> | undefined;

  private constructor(
    /** What to hand to `new Client(target, credentials.createInsecure())`: `unix:///...` or `127.0.0.1:port`. */
    readonly target: string,
    private readonly server: ReturnType<typeof createServer>,
    private readonly directory: string | undefined,
  ) {
    super();
  }

  /** Listens on a Unix socket in a new temporary directory, or on `options.listen`. */
  static async open(manager: Manager, destination: Destination, options: GrpcBridgeOptions = {}): Promise<GrpcBridge> {
    const { reuseOnly, listen, ...dialOptions } = options;
    if (!reuseOnly && destination instanceof RoutingId) {
      throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `routing id ${destination} names no address to dial: give an endpoint, or reuseOnly: true to use a VC the peer opened`);
    }
    const target = typeof destination === 'string' ? Endpoint.parse(destination) : destination;
    const openFlow = (): Promise<Flow> => (reuseOnly ? Promise.resolve().then(() => manager.dialCached(target)) : manager.dial(target as Endpoint, dialOptions));
    // Half-open, so a client's end of stream reaches the server as the flow's end, not a close.
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    const directory = listen === undefined ? await mkdtemp(join(tmpdir(), 'ridproxy-grpc-')) : undefined;
    let where: string;
    try {
      if (directory !== undefined) {
        where = join(directory, 'bridge.sock');
        await listenOn(server, () => server.listen(where), where);
      } else {
        const { host, port } = parseAddress(listen!, '127.0.0.1');
        await listenOn(server, () => server.listen(port, host), `${host}:${port}`);
        const bound = server.address();
        where = `${host.includes(':') ? `[${host}]` : host}:${bound !== null && typeof bound === 'object' ? bound.port : port}`;
      }
    } catch (err) {
      if (directory !== undefined) await rm(directory, { recursive: true, force: true });
      throw err;
    }
    const bridge = new GrpcBridge(directory !== undefined ? `unix://${where}` : where, server, directory);
    server.on('connection', (socket) => bridge.carry(socket, openFlow()));
    return bridge;
  }

  /** Stops listening and resets every connection still carried. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const socket of this.sockets) socket.destroy();
      await stopped;
      if (this.directory !== undefined) await rm(this.directory, { recursive: true, force: true });
    })();
    return this.closing;
  }

  private carry(socket: Socket, flow: Promise<Flow>): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // Until splice owns it, a client hanging up must not become an uncaught error.
    socket.on('error', () => undefined);
    flow.then(
      (opened) => {
        if (this.closing !== undefined || socket.destroyed) opened.destroy();
        else void splice(socket, opened);
      },
      (err: RidproxyError) => {
        socket.destroy();
        this.emit('dialError', err);
      },
    );
  }
}

/** `GrpcBridge.open`, for symmetry with serveGrpc. */
export function grpcBridge(manager: Manager, destination: Destination, options?: GrpcBridgeOptions): Promise<GrpcBridge> {
  return GrpcBridge.open(manager, destination, options);
}

async function listenOn(server: ReturnType<typeof createServer>, start: () => void, where: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
    start();
  }).catch((err: NodeJS.ErrnoException) => {
    throw new UnreachableError(`cannot listen on ${where}: ${err.message}`, { cause: err });
  });
}

/**
 * A Duplex for `http2.connect(authority, { createConnection: () => createConnection(manager, endpoint) })`:
 * http2 wants its connection synchronously, so this one buffers writes until the dial resolves and
 * fails (emitting the dial's RidproxyError) if it does not. With a flow already in hand, pass the flow itself.
 */
export function createConnection(manager: Manager, destination: string | Endpoint, options: DialOptions = {}): Duplex {
  return new DialingConnection(manager.dial(destination, options));
}

class DialingConnection extends Duplex {
  private flow: Flow | undefined;
  private ending = false;

  constructor(private readonly pending: Promise<Flow>) {
    super({ allowHalfOpen: true });
    pending.then(
      (flow) => {
        if (this.destroyed) {
          flow.destroy();
          return;
        }
        this.flow = flow;
        flow.on('data', (chunk: Buffer) => {
          if (!this.push(chunk)) flow.pause();
        });
        flow.on('end', () => this.push(null));
        flow.on('error', (err) => this.destroy(err));
        // Only the manager's close() ends a flow's writing side for its owner: http2 must hear that, not write after the end.
        flow.on('finish', () => {
          if (!this.ending) this.destroy(new ManagerError('ERR_MANAGER_CLOSED', "the flow's manager was closed"));
        });
        // A flow destroyed without an error (its manager closed) must not leave this side hanging.
        flow.on('close', () => {
          if (!(flow.readableEnded && flow.writableFinished)) this.destroy(flow.errored ?? undefined);
        });
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _read(): void {
    this.flow?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.pending.then((flow) => flow.write(chunk, callback), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.ending = true;
    this.pending.then((flow) => flow.end(callback), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.flow !== undefined && !this.flow.destroyed) this.flow.destroy(err ?? undefined);
    callback(err);
  }
}
