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
