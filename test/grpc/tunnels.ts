import { credentials as grpcCredentials, type ChannelCredentials, type ChannelOptions, type Client } from '@grpc/grpc-js';
import type { Manager } from '../../src/index.js';
import { grpcBridge, serveGrpc, type GrpcBridgeOptions, type ServeGrpcOptions } from '../../src/grpc/index.js';
import type { useNetwork } from '../fixtures.js';
import { EchoClient, echoServer } from './service.js';

export type Network = ReturnType<typeof useNetwork>;

/** An echo server served on the flows of a manager registered on a new proxy. */
export async function servedEcho(net: Network, options: ServeGrpcOptions = {}) {
  const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
  const serverManager = net.manager();
  const { endpoint } = await serverManager.proxyListen('grpc', proxy.endpoint);
  const { server, cancelled } = echoServer();
  const serving = serveGrpc(serverManager, server, options);
  net.defer(async () => {
    server.forceShutdown();
    await serving.close();
  });
  return { proxy, serverManager, endpoint, server, serving, cancelled };
}

export interface ForwardOptions {
  bridge?: GrpcBridgeOptions;
  serve?: ServeGrpcOptions;
  credentials?: ChannelCredentials;
  channelOptions?: ChannelOptions;
}

/** servedEcho, and a client manager with a bridge to it and an EchoClient on the bridge. */
export async function forwardTunnel(net: Network, options: ForwardOptions = {}) {
  const served = await servedEcho(net, options.serve);
  const clientManager = net.manager();
  const bridge = await grpcBridge(clientManager, served.endpoint, options.bridge);
  net.defer(() => bridge.close());
  const client = clientOf(net, bridge.target, options.credentials, options.channelOptions);
  return { ...served, client, bridge, clientManager };
}

/**
 * A hub registered on a proxy, and an agent that only dials it and serves gRPC with serveGrpc on
 * that VC, holding it open with one flow by hand; the hub's client of the agent goes through a
 * reuse-only bridge. (serveGrpcReverse does the holding, and more: test/grpc/reverse.test.ts.)
 */
export async function reverseTunnel(net: Network) {
  const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
  const hub = net.manager();
  const { endpoint } = await hub.proxyListen('hub', proxy.endpoint);
  const agent = net.manager();
  const { server } = echoServer();
  const serving = serveGrpc(agent, server);
  net.defer(async () => {
    server.forceShutdown();
    await serving.close();
  });
  const held = await agent.dial(endpoint);
  net.defer(async () => held.destroy());
  const arrived = await hub.accept();
  const bridge = await grpcBridge(hub, arrived.conn.remoteRoutingId, { reuseOnly: true });
  net.defer(() => bridge.close());
  return { hub, agent, agentRoutingId: arrived.conn.remoteRoutingId, client: clientOf(net, bridge.target) };
}

/** Another caller of the same server: its own manager (so its own routing ID), bridge and client. */
export async function anotherCaller(net: Network, endpoint: string): Promise<{ manager: Manager; client: any }> {
  const manager = net.manager();
  const bridge = await grpcBridge(manager, endpoint);
  net.defer(() => bridge.close());
  return { manager, client: clientOf(net, bridge.target) };
}

/** An EchoClient closed when the test ends. */
export function clientOf(net: Network, target: string, credentials: ChannelCredentials = grpcCredentials.createInsecure(), channelOptions?: ChannelOptions): any {
  const client = new EchoClient(target, credentials, channelOptions) as Client & Record<string, any>;
  net.defer(async () => client.close());
  return client;
}
