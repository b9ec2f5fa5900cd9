import { AsyncLocalStorage } from 'node:async_hooks';
import { ServerCredentials, type Server as GrpcServer } from '@grpc/grpc-js';
import { InvalidArgumentError } from '../errors.js';
import type { Flow } from '../manager/flow.js';
import type { Manager } from '../manager/manager.js';
import type { PeerIdentity } from '../secure/index.js';

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
