/**
 * The gRPC server of bench/grpc.ts, in a process of its own: the bench service (lib/grpc-service)
 * on a loopback port (the baseline), on the flows of a Manager registered on the proxy (forward
 * paths), or on the flows a hub opens back to an agent that dialed it (the reverse path).
 */
import { ServerCredentials } from '@grpc/grpc-js';
import { serveRpc } from '../harness/rpc.js';
import { benchServer } from '../lib/grpc-service.js';
import { loadRidproxy, loadRidproxyGrpc } from '../lib/ridproxy.js';

export type GrpcServerStart =
  | { mode: 'tcp' }
  /** Registered on the proxy at `proxy`; the result's endpoint is what clients dial. */
  | { mode: 'forward'; proxy: string }
  /** An agent that dials the hub at `hub` and listens nowhere. */
  | { mode: 'reverse'; hub: string };

export interface GrpcServerApi {
  start(p: GrpcServerStart): Promise<{ target?: string; endpoint?: string; routingId?: string }>;
}

serveRpc<GrpcServerApi>({
  start: async (p) => {
    const server = benchServer();
    if (p.mode === 'tcp') {
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
      );
      return { target: `127.0.0.1:${port}` };
    }
    const { Manager } = await loadRidproxy();
    const { serveGrpc, serveGrpcReverse } = await loadRidproxyGrpc();
    const manager = new Manager();
    if (p.mode === 'forward') {
      const { endpoint } = await manager.proxyListen('grpc', p.proxy);
      serveGrpc(manager, server);
      return { endpoint };
    }
    await serveGrpcReverse(manager, p.hub, server);
    return { routingId: manager.routingId.toString() };
  },
});
