import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ManagerError } from '../errors.js';
import type { Flow } from '../manager/flow.js';
import type { Manager } from '../manager/manager.js';
import { splice } from '../manager/splice.js';
import { openServiceConnection, readOrigin, type FlowOrigin } from './protocol.js';
import { parseSocketAddress, proxyHeader, type ProxyProtocolVersion } from './proxy-protocol.js';
import type { TlsTermination } from './tls-termination.js';

/** Where flows go and how they arrive there; the hooks let a caller log and count without owning the logic. */
export interface ForwardOptions {
  /** The local service. */
  host: string;
  port: number;
  /** Start each local connection with this PROXY protocol header (the public client's address when the origin names one). */
  proxyProtocol?: ProxyProtocolVersion;
  /** Terminate TLS a proxy's blind TLS ingress passed on (origin `via: tls`) and forward plaintext. */
  tls?: TlsTermination;
  /**
   * Whether a flow from this peer (routing id as text) comes from a proxy's web ingress and so
   * starts with an origin message. Only trust the proxies this process registered on: anyone
   * else could claim any client address. Without it no flow is read for an origin.
   */
  fromIngress?(peer: string): boolean;
  /** The origin a flow from the ingress started with, before the local connection is tried. */
  onOrigin?(origin: FlowOrigin, flow: Flow): void;
  /** The local connection is up (its PROXY header written); the bytes start to cross. */
  onConnected?(socket: Socket, flow: Flow, origin: FlowOrigin | undefined): void;
  /** Each error the flow emits; the first one becomes the result's `error`. */
  onFlowError?(err: Error, flow: Flow): void;
}

/** How one forwarded flow ended. */
export type ForwardResult =
  /** No bytes crossed: the origin message was bad or the local service refused (`code` from the error, ERR_SERVICE_UNREACHABLE for a refusal). */
  | { outcome: 'refused'; peer: string; code: string; error: Error; origin?: FlowOrigin }
  /** Spliced until both sides ended (`ok`) or one failed (`failed`, with the flow's first error). Bytes as counted on the local socket. */
  | { outcome: 'ok' | 'failed'; peer: string; origin?: FlowOrigin; bytesToPeer: number; bytesFromPeer: number; durationMs: number; error?: Error; socket: Socket };

/**
 * Forwards one accepted flow to the local service, as `serve --forward` does: reads the origin
 * of an ingress flow, connects, writes the PROXY header, terminates passed-through TLS, splices.
 * Never rejects: a flow failing (the client vanished, the proxy went away) is an outcome, not
 * a crash of whoever forwards many.
 */
export async function forwardFlow(flow: Flow, options: ForwardOptions): Promise<ForwardResult> {
  const peer = flow.conn.remoteRoutingId.toString();
  const startedAt = Date.now();
  let failure: Error | undefined;
  flow.on('error', (err) => {
    failure ??= err;
    options.onFlowError?.(err, flow);
  });
  let socket: Socket;
  let origin: FlowOrigin | undefined;
  try {
    // A flow from the proxy itself comes from its web ingress, and says first where from.
    origin = options.fromIngress?.(peer) ? await readOrigin(flow) : undefined;
    if (origin !== undefined) options.onOrigin?.(origin, flow);
    socket = await openServiceConnection(flow, options.host, options.port);
    if (options.proxyProtocol !== undefined) {
      const client = origin === undefined ? undefined : parseSocketAddress(origin.client);
      const local = socket.remoteAddress === undefined ? undefined : { address: socket.remoteAddress, port: socket.remotePort ?? options.port };
      socket.write(proxyHeader(options.proxyProtocol, client, local));
    }
  } catch (err) {
    const error = err as Error;
    // A refused service closed the flow with its reason; a bad origin message leaves nothing to say to the ingress.
    if (origin === undefined && options.fromIngress?.(peer)) flow.destroy(error);
    return { outcome: 'refused', peer, code: (error as { code?: string }).code ?? 'ERR_SERVICE_UNREACHABLE', error, ...(origin && { origin }) };
  }
  options.onConnected?.(socket, flow, origin);
  const peerSide: Duplex = origin?.via === 'tls' && options.tls !== undefined ? options.tls.accept(flow) : flow;
  await splice(peerSide, socket);
  return {
    outcome: failure ? 'failed' : 'ok',
    peer,
    ...(origin && { origin }),
    // The local socket counts what crossed it: read from the service went to the peer.
    bytesToPeer: socket.bytesRead,
    bytesFromPeer: socket.bytesWritten,
    durationMs: Date.now() - startedAt,
    ...(failure && { error: failure }),
    socket,
  };
}

/** A running `forwardFlows`. */
export interface Forwarding {
  /** Stops accepting flows; the ones already forwarded carry on until they end. */
  close(): void;
  /** Resolves once no flow is accepted any more (close(), or the manager closed or stopped listening) and every forwarded flow ended. */
  readonly done: Promise<void>;
}

/**
 * Accepts every flow of `manager` and forwards each with `forwardFlow`, reporting how each ended
 * to `onResult`, until close() or until the manager closes or stops listening.
 */
export function forwardFlows(manager: Manager, options: ForwardOptions & { onResult?(result: ForwardResult, flow: Flow): void }): Forwarding {
  const stop = new AbortController();
  const running = new Set<Promise<void>>();
  const done = (async () => {
    for (;;) {
      let flow: Flow;
      try {
        flow = await manager.accept({ signal: stop.signal });
      } catch (err) {
        if (stop.signal.aborted || (err instanceof ManagerError && (err.code === 'ERR_NOT_LISTENING' || err.code === 'ERR_MANAGER_CLOSED'))) break;
        throw err;
      }
      const forwarded = forwardFlow(flow, options).then((result) => options.onResult?.(result, flow));
      running.add(forwarded);
      // The deletion's own promise must not carry a throwing onResult on as an unhandled rejection: `done` reports it.
      forwarded.finally(() => running.delete(forwarded)).catch(() => undefined);
    }
    await Promise.all(running);
  })();
  return { close: () => stop.abort(), done };
}
