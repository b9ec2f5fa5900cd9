import { createServer, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { awaitServiceReady, forwardFlows, proxyHeader, writeOrigin, type ForwardResult } from '../../src/ingress/index.js';
import type { Manager } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';
import { digestStream, waitFor, writeRandom } from '../helpers.js';

async function listenLocal(net: ReturnType<typeof useNetwork>, onSocket: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  net.defer(() => new Promise((resolve) => server.close(resolve)));
  return { server, port: (server.address() as { port: number }).port };
}

/** A port nothing listens on: bound once, then closed. */
async function refusingPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('forwardFlows', () => {
  const net = useNetwork({ checkLeaks: true });

  async function pair(): Promise<{ server: Manager; client: Manager; endpoint: string }> {
    const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    return { server, client: net.manager(), endpoint: server.status().endpoints[0]! };
  }

  it('carries concurrent flows to a local TCP service and back intact', async () => {
    const { server, client, endpoint } = await pair();
    const service = await listenLocal(net, (socket) => socket.pipe(socket));
    const results: ForwardResult[] = [];
    const forwarding = forwardFlows(server, { host: '127.0.0.1', port: service.port, onResult: (result) => results.push(result) });
    net.defer(async () => forwarding.close());

    const sizes = [4, 64 * 1024, 1 << 20, 3 << 20, 200_004];
    const echoed = await Promise.all(
      sizes.map(async (size) => {
        const flow = await client.dial(endpoint);
        await awaitServiceReady(flow);
        const [sent, received] = await Promise.all([writeRandom(flow, size, 16 * 1024), digestStream(flow)]);
        return { sent, received, size };
      }),
    );
    for (const { sent, received, size } of echoed) {
      expect(received.bytes).toBe(size);
      expect(received.sha256).toBe(sent);
    }
    await waitFor(() => results.length === sizes.length, 'a result for every flow');
    expect(results.map((r) => r.outcome)).toEqual(sizes.map(() => 'ok'));
    const bytes = results.map((r) => (r.outcome === 'refused' ? -1 : r.bytesFromPeer)).sort((a, b) => a - b);
    expect(bytes).toEqual([...sizes].sort((a, b) => a - b));
  });

  it('reports a refusing local port with a code, ends the flow with the reason, and forwards the next flow', async () => {
    const { server, client, endpoint } = await pair();
    const results: ForwardResult[] = [];
    const port = await refusingPort();
    const forwarding = forwardFlows(server, { host: '127.0.0.1', port, onResult: (result) => results.push(result) });
    net.defer(async () => forwarding.close());

    const flow = await client.dial(endpoint);
    flow.on('error', () => undefined);
    await expect(awaitServiceReady(flow)).rejects.toMatchObject({ code: 'ERR_SERVICE_UNREACHABLE', message: expect.stringContaining(`127.0.0.1:${port}: connection refused`) });
    await waitFor(() => results.length === 1, 'the refusal reported');
    expect(results[0]).toMatchObject({ outcome: 'refused', code: 'ERR_SERVICE_UNREACHABLE', peer: client.routingId.toString() });

    // Still forwarding: a second refusal is reported too.
    const again = await client.dial(endpoint);
    again.on('error', () => undefined);
    await expect(awaitServiceReady(again)).rejects.toMatchObject({ code: 'ERR_SERVICE_UNREACHABLE' });
    await waitFor(() => results.length === 2, 'the second refusal reported');
  });

  it('ends a flow whose origin message is not one, from a peer it takes for an ingress, and reports ERR_PROTOCOL', async () => {
    const { server, client, endpoint } = await pair();
    const service = await listenLocal(net, (socket) => socket.pipe(socket));
    const results: ForwardResult[] = [];
    const forwarding = forwardFlows(server, { host: '127.0.0.1', port: service.port, fromIngress: () => true, onResult: (result) => results.push(result) });
    net.defer(async () => forwarding.close());

    const flow = await client.dial(endpoint);
    flow.on('error', () => undefined);
    await flow.writeMsg(Buffer.from('not json'));
    const ended = new Promise<void>((resolve) => flow.once('close', () => resolve()));
    flow.resume();
    await ended;
    await waitFor(() => results.length === 1, 'the refusal reported');
    expect(results[0]).toMatchObject({ outcome: 'refused', code: 'ERR_PROTOCOL' });
  });

  it('forwards no new flow after close(), and done settles', async () => {
    const { server, client, endpoint } = await pair();
    let connections = 0;
    const service = await listenLocal(net, (socket) => {
      connections++;
      socket.pipe(socket);
    });
    const results: ForwardResult[] = [];
    const forwarding = forwardFlows(server, { host: '127.0.0.1', port: service.port, onResult: (result) => results.push(result) });

    const first = await client.dial(endpoint);
    await awaitServiceReady(first);
    first.end('before');
    expect((await digestStream(first)).bytes).toBe('before'.length);
    await waitFor(() => results.length === 1, 'the first flow finished');

    forwarding.close();
    await forwarding.done;
    const late = await client.dial(endpoint);
    late.on('error', () => undefined);
    // Nobody accepts it now: no opening message comes within a generous wait, and no local connection is made.
    const reply = await Promise.race([awaitServiceReady(late).then(() => 'ready', () => 'failed'), new Promise((resolve) => setTimeout(resolve, 300, 'nothing'))]);
    expect(reply).toBe('nothing');
    expect(connections).toBe(1);
    expect(results).toHaveLength(1);
    late.destroy();
  });

  it('gives the local service a PROXY v2 header with the client address of an ingress origin', async () => {
    const { server, client, endpoint } = await pair();
    const received: Buffer[] = [];
    const service = await listenLocal(net, (socket) => {
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      socket.on('end', () => socket.end());
    });
    const origins: string[] = [];
    const forwarding = forwardFlows(server, {
      host: '127.0.0.1',
      port: service.port,
      proxyProtocol: 'v2',
      // The test's client plays the proxy's ingress: only its flows start with an origin.
      fromIngress: (peer) => peer === client.routingId.toString(),
      onOrigin: (origin) => origins.push(origin.client),
    });
    net.defer(async () => forwarding.close());

    const flow = await client.dial(endpoint);
    await writeOrigin(flow, { via: 'tcp', client: '203.0.113.9:4567' });
    await awaitServiceReady(flow);
    flow.end('payload');
    await digestStream(flow);
    const expected = Buffer.concat([proxyHeader('v2', { address: '203.0.113.9', port: 4567 }, { address: '127.0.0.1', port: service.port }), Buffer.from('payload')]);
    await waitFor(() => Buffer.concat(received).length >= expected.length, 'header and payload at the service');
    expect(Buffer.concat(received).equals(expected)).toBe(true);
    expect(origins).toEqual(['203.0.113.9:4567']);
  });
});
