import { Endpoint } from '../id/endpoint.js';
import type { Identity } from '../id/identity.js';
import type { RoutingId } from '../id/routing-id.js';
import type { Flow } from '../manager/flow.js';
import { Manager } from '../manager/manager.js';
import type { Proxy } from '../proxy/proxy.js';
import { awaitServiceReady, writeOrigin, type FlowOrigin } from '../tunnel/protocol.js';

/** The loopback address of the same family as a listen address, so the proxy can reach itself. */
function loopbackFor(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

/**
 * How the web ingress reaches servers: as a client process of its own proxy, with a key of its
 * own (a proxy refuses a peer with its own key) that RegisterOk names to every server, over a
 * hop connection to the proxy's own listener that pins the proxy's key. Each public connection becomes a flow
 * of a VC to the server, end-to-end encrypted between the proxy and the server like any VC, so
 * the server authenticates the ingress as the caller and `serve` carries the flow to its local
 * service as for any client. VCs are shared per server and closed when idle.
 */
export class IngressDialer {
  private readonly manager: Manager;

  constructor(
    private readonly proxy: Proxy,
    identity: Identity,
    private readonly dialToken: () => string | undefined,
  ) {
    this.manager = new Manager({ identity });
  }

  /** Whether `rid` is registered on the proxy now (so a request for it can be carried). */
  isConnected(rid: RoutingId): boolean {
    return this.proxy.isRegistered(rid);
  }

  /**
   * A flow to `rid`'s service, announced with `origin`, once the serving side said its local
   * service is up; rejects with the serve's reason (ERR_SERVICE_UNREACHABLE) or the dial's error.
   */
  async open(rid: RoutingId, origin: FlowOrigin): Promise<Flow> {
    const target = new Endpoint(loopbackFor(this.proxy.host), this.proxy.port, rid, this.proxy.routingId);
    const flow = await this.manager.dial(target, { token: this.dialToken() });
    // Whoever takes the flow listens for its errors; until then, and after, none may go unheard.
    flow.on('error', () => undefined);
    try {
      await writeOrigin(flow, origin);
      await awaitServiceReady(flow);
    } catch (err) {
      flow.destroy();
      throw err;
    }
    return flow;
  }

  close(): Promise<void> {
    return this.manager.close({ drainTimeout: 0 });
  }
}
