import { promisify } from 'node:util';
import { credentials, Server } from '@grpc/grpc-js';
import { expect, test } from 'vitest';
import { Manager, Proxy } from '../../src/index.js';
import { grpcBridge, serveGrpc, serveGrpcReverse } from '../../src/grpc/index.js';
import { EchoClient, echoService } from './service.js';
import { markedExample, readme } from '../readme.js';

test('the README example: a forward tunnel to a server behind a proxy, and a reverse tunnel to an agent', async () => {
  // readme:start
  const proxy = await Proxy.listen({ host: '127.0.0.1', port: 0 });
  const echo = { echo: (call: any, callback: any) => callback(null, call.request) };

  // Forward: a gRPC server reachable only through the proxy, by its endpoint.
  const serverManager = new Manager();
  const { endpoint } = await serverManager.proxyListen('grpc', proxy.endpoint);
  const server = new Server();
  server.addService(echoService, echo);
  const serving = serveGrpc(serverManager, server);

  const clientManager = new Manager();
  const bridge = await grpcBridge(clientManager, endpoint); // a local Unix socket; each connection is a flow
  const client = new EchoClient(bridge.target, credentials.createInsecure()) as any;
  const reply = await promisify(client.echo.bind(client))({ text: 'forward' });

  // Reverse: the agent dials a hub and serves gRPC on that VC; it listens nowhere.
  const hub = new Manager();
  const hubRegistration = await hub.proxyListen('hub', proxy.endpoint);
  const agent = new Manager();
  const agentServer = new Server();
  agentServer.addService(echoService, echo);
  // It holds the VC open with one flow, and dials again (with backoff) whenever the VC is lost.
  const agentServing = await serveGrpcReverse(agent, hubRegistration.endpoint, agentServer);
  const arrived = await hub.accept(); // that flow: the hub learns who dialed, and leaves it open
  arrived.on('error', () => undefined); // reset when the agent closes: expected, not a failure
  const toAgent = await grpcBridge(hub, arrived.conn.remoteRoutingId, { reuseOnly: true });
  const agentClient = new EchoClient(toAgent.target, credentials.createInsecure()) as any;
  const agentReply = await promisify(agentClient.echo.bind(agentClient))({ text: 'reverse' });

  for (const c of [client, agentClient]) c.close();
  await Promise.all([bridge.close(), toAgent.close(), serving.close(), agentServing.close()]);
  await Promise.all([clientManager.close(), serverManager.close(), agent.close(), hub.close()]);
  await proxy.close();
  // readme:end
  expect(reply).toEqual({ text: 'forward' });
  expect(agentReply).toEqual({ text: 'reverse' });
});

test('the README shows exactly the example above', () => {
  expect(readme()).toContain(markedExample(import.meta.url));
});
