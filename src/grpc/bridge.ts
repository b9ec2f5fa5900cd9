import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, UnreachableError, type RidproxyError } from '../errors.js';
import { Endpoint, parseAddress } from '../id/endpoint.js';
import { RoutingId } from '../id/routing-id.js';
import type { Flow } from '../manager/flow.js';
import type { Manager } from '../manager/manager.js';
import type { DialOptions } from '../manager/options.js';
import { splice } from '../manager/splice.js';

/** Whom a client-side helper reaches: an endpoint to dial, or (with `reuseOnly`) a peer already connected. */
export type Destination = string | Endpoint | RoutingId;

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
