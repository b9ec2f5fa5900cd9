import { connect, createServer, type ClientHttp2Session } from 'node:http2';
import { status, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, test } from 'vitest';
import { RoutingId, type Manager } from '../../src/index.js';
import { createConnection, grpcBridge, serveGrpc } from '../../src/grpc/index.js';
import { useNetwork } from '../fixtures.js';
import { collect, unary } from './service.js';
import { clientOf, forwardTunnel, reverseTunnel } from './tunnels.js';
import { http2Call, http2Unary } from '../../bench/lib/grpc-http2.js';
import { benchServer, streamRequest } from '../../bench/lib/grpc-service.js';

const net = useNetwork({ checkLeaks: true });

describe('gRPC forward tunnel through a proxy', () => {
  test('unary, server-streaming, client-streaming and bidi calls reach the server behind the proxy', async () => {
    const { client } = await forwardTunnel(net);
    expect(await unary(client, 'echo', { text: 'hi' })).toEqual({ text: 'hi', peer: 'server' });

    expect(await collect(client.count({ n: 5 }))).toEqual([0, 1, 2, 3, 4].map((i) => ({ i })));

    const total = new Promise((resolve, reject) => {
      const call = client.sum((err: ServiceError | null, reply: unknown) => (err ? reject(err) : resolve(reply)));
      for (const n of [1, 2, 3, 4]) call.write({ n });
      call.end();
    });
    expect(await total).toEqual({ total: 10 });

    const chat = client.chat();
    const replies = collect(chat);
    for (const text of ['a', 'b', 'c']) chat.write({ text });
    chat.end();
    expect(await replies).toEqual([{ text: 'A' }, { text: 'B' }, { text: 'C' }]);
  });

  test('a bridge on 127.0.0.1 TCP carries calls as the Unix-socket one does', async () => {
    const { client, bridge } = await forwardTunnel(net, { bridge: { listen: '127.0.0.1:0' } });
    expect(bridge.target).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(await unary(client, 'echo', { text: 'tcp' })).toEqual({ text: 'tcp', peer: 'server' });
  });

  test('a deadline expires as DEADLINE_EXCEEDED at the client, and the server handler sees the call cancelled', async () => {
    const { client, cancelled } = await forwardTunnel(net);
    await unary(client, 'echo', { text: 'warm up' });
    const started = Date.now();
    await expect(unary(client, 'hang', {}, { deadline: Date.now() + 300 })).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
    expect(Date.now() - started).toBeLessThan(5_000);
    await cancelled;
  });

  test('a client cancelling a call is seen by the server handler as cancelled', async () => {
    const { client, cancelled } = await forwardTunnel(net);
    await unary(client, 'echo', { text: 'warm up' });
    const outcome = new Promise<ServiceError>((resolve) => {
      const call = client.hang({}, (err: ServiceError) => resolve(err));
      setTimeout(() => call.cancel(), 100);
    });
    expect(await outcome).toMatchObject({ code: status.CANCELLED });
    await cancelled;
  });

  test('100 concurrent calls all get their own answer', async () => {
    const { client } = await forwardTunnel(net);
    const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => unary(client, 'echo', { text: `call ${i}` })));
    expect(replies.map((r) => r.text)).toEqual(Array.from({ length: 100 }, (_, i) => `call ${i}`));
  });
});

describe('gRPC reverse tunnel', () => {
  test('a hub calls an agent that listens nowhere, by its routing id, over the VC the agent dialed', async () => {
    const { agent, agentRoutingId, client } = await reverseTunnel(net);
    expect(agent.status().endpoints).toEqual([`ridp:///${agent.routingId}`]);
    expect(agentRoutingId.toString()).toBe(agent.routingId.toString());
    expect(await unary(client, 'echo', { text: 'to the agent' })).toEqual({ text: 'to the agent', peer: 'server' });
    expect(await collect(client.count({ n: 3 }))).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
  });

  test('a reuse-only bridge to a peer with no VC fails the call UNAVAILABLE and reports ERR_NO_CACHED_VC', async () => {
    const hub: Manager = net.manager();
    const bridge = await grpcBridge(hub, RoutingId.fromPublicKey(Buffer.alloc(32, 7)), { reuseOnly: true });
    net.defer(() => bridge.close());
    const dialError = new Promise((resolve) => bridge.once('dialError', resolve));
    const client = clientOf(net, bridge.target);
    await expect(unary(client, 'echo', { text: 'x' }, { deadline: Date.now() + 5_000 })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    expect(await dialError).toMatchObject({ code: 'ERR_NO_CACHED_VC' });
  });

  test('a bridge that would dial refuses a bare routing id', async () => {
    await expect(grpcBridge(net.manager(), RoutingId.fromPublicKey(Buffer.alloc(32, 7)))).rejects.toMatchObject({ code: 'ERR_INVALID_ENDPOINT' });
  });
});

describe('plain HTTP/2 over flows', () => {
  test('http2.connect with createConnection makes a request to an http2 server fed with accepted flows', async () => {
    const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
    const serverManager = net.manager();
    const registration = await serverManager.proxyListen('web', proxy.endpoint);
    const web = createServer((request, response) => {
      response.setHeader('content-type', 'text/plain');
      response.end(`you asked for ${request.url}`);
    });
    void (async () => {
      for await (const flow of serverManager) web.emit('connection', flow);
    })();
    net.defer(() => new Promise((resolve) => web.close(resolve)));

    const clientManager = net.manager();
    const session: ClientHttp2Session = connect('http://service', { createConnection: () => createConnection(clientManager, registration.endpoint) });
    net.defer(() => new Promise((resolve) => session.close(() => resolve(undefined))));
    const request = session.request({ ':path': '/hello' });
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    const [headers] = await Promise.all([new Promise<Record<string, unknown>>((resolve) => request.once('response', resolve)), new Promise((resolve) => request.once('end', resolve))]);
    expect(headers[':status']).toBe(200);
    expect(body).toBe('you asked for /hello');
  });

  test('node:http2 through createConnection calls a grpc-js server fed by serveGrpc: unary, a server stream, and an unknown method', async () => {
    const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
    const serverManager = net.manager();
    const { endpoint } = await serverManager.proxyListen('grpc', proxy.endpoint);
    const server = benchServer();
    const serving = serveGrpc(serverManager, server);
    net.defer(async () => {
      server.forceShutdown();
      await serving.close();
    });
    const clientManager = net.manager();
    const session = connect('http://bench', { createConnection: () => createConnection(clientManager, endpoint) });
    net.defer(() => new Promise((resolve) => session.close(() => resolve(undefined))));

    expect((await http2Unary(session, '/bench.Bench/Unary', Buffer.from('ping'))).toString()).toBe('ping');
    const sizes: number[] = [];
    await http2Call(session, '/bench.Bench/Stream', streamRequest(1_000_000, 65_536), (message) => sizes.push(message.length));
    expect(sizes.length).toBe(16);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1_000_000);
    await expect(http2Unary(session, '/bench.Bench/Nothing', Buffer.alloc(0))).rejects.toMatchObject({ code: status.UNIMPLEMENTED });
  });

  test('createConnection fails the HTTP/2 session with the dial error', async () => {
    const clientManager = net.manager();
    const session = connect('http://nowhere', {
      createConnection: () => createConnection(clientManager, `ridp://127.0.0.1:1/${RoutingId.fromPublicKey(Buffer.alloc(32, 1))}`),
    });
    const err = await new Promise((resolve) => session.once('error', resolve));
    expect(err).toMatchObject({ code: 'ERR_UNREACHABLE' });
  });
});
