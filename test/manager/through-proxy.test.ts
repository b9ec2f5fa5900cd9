import { describe, expect, it } from 'vitest';
import { Endpoint, Manager, RoutingId, type Flow } from '../../src/index.js';
import { serveEcho, useNetwork } from '../fixtures.js';
import { digestStream, readAll, startRelay, waitFor, writeRandom } from '../helpers.js';

const MiB = 1 << 20;

describe('flows through a proxy', () => {
  const net = useNetwork({ checkLeaks: true });

  it('reaches a server by routing id and echoes 64 MiB intact', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const registration = await server.proxyListen('main', proxy.endpoint);
    expect(server.status().endpoints[0]).toBe(registration.endpoint);
    expect(registration.endpoint).toContain(server.routingId.toString());
    serveEcho(server);

    const client = net.manager();
    const flow = await client.dial(server.status().endpoints[0]);
    const [sent, received] = await Promise.all([writeRandom(flow, 64 * MiB), digestStream(flow)]);
    expect(received.bytes).toBe(64 * MiB);
    expect(received.sha256).toBe(sent);
    expect(flow.remotePublicKey.equals(server.identity.publicKey)).toBe(true);
    expect(proxy.stats().bytesForwarded).toBeGreaterThanOrEqual(128 * MiB);
  });

  it('carries 1,000 concurrent flows of 64 KiB over one VC, each intact', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    const client = net.manager();
    const endpoint = server.status().endpoints[0];
    const results = await Promise.all(
      Array.from({ length: 1000 }, async () => {
        const flow = await client.dial(endpoint);
        const [sent, received] = await Promise.all([writeRandom(flow, 64 * 1024, 16 * 1024), digestStream(flow)]);
        return sent === received.sha256 && received.bytes === 64 * 1024;
      }),
    );
    expect(results.filter(Boolean)).toHaveLength(1000);
    expect(proxy.stats().vcs).toBe(1);
  });

  it('routes 50 servers on one proxy, each reached only by its own clients', async () => {
    const proxy = await net.proxy();
    const servers = await Promise.all(
      Array.from({ length: 50 }, async (_, index) => {
        const server = net.manager();
        await server.proxyListen('main', proxy.endpoint);
        void (async () => {
          for await (const flow of server) {
            const request = await flow.readMsg();
            await flow.writeMsgAndClose(Buffer.from(`server ${index} answers ${request.toString()}`));
          }
        })();
        return server;
      }),
    );
    expect(proxy.stats().registrations).toBe(50);
    await Promise.all(
      servers.map(async (server, index) => {
        const client = net.manager();
        const flow = await client.dial(server.status().endpoints[0]);
        await flow.writeMsg(Buffer.from(`client ${index}`));
        expect((await flow.readMsg()).toString()).toBe(`server ${index} answers client ${index}`);
        expect(flow.remoteEndpoint).toBe(server.status().endpoints[0]);
      }),
    );
  });

  it('rejects a dial to an unregistered routing id with a typed error while another VC on the same connection keeps transferring', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    const client = net.manager();
    const flow = await client.dial(server.status().endpoints[0]);
    const transfer = Promise.all([writeRandom(flow, 16 * MiB), digestStream(flow)]);

    const nobody = new Manager().routingId.toString();
    const unknown = new Endpoint(proxy.host, proxy.port, RoutingId.parse(nobody), proxy.routingId).toString();
    const error = await client.dial(unknown).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'ERR_UNKNOWN_DESTINATION' });
    expect((error as Error).message).toContain(nobody);
    expect((error as Error).message).toContain(proxy.endpoint);

    const [sent, received] = await transfer;
    expect(received.sha256).toBe(sent);
    expect(proxy.stats().connections).toBe(2);
  });

  it('fails the client flows with a reason within 1 s when the server connection dies, and settles proxyListen.closed when the proxy closes', async () => {
    const proxy = await net.proxy();
    const cutter = await startRelay(proxy.port);
    net.defer(() => cutter.close());
    const server = net.manager();
    await server.proxyListen('main', new Endpoint('127.0.0.1', cutter.port, proxy.routingId));
    void (async () => {
      for await (const flow of server) {
        // The server's own flows fail too when its connection is cut; that side is not under test.
        flow.on('error', () => undefined);
        flow.resume();
      }
    })();
    const client = net.manager();
    const serverEndpoint = new Endpoint(proxy.host, proxy.port, server.routingId, proxy.routingId);
    const flows = await Promise.all([1, 2, 3].map(() => client.dial(serverEndpoint)));
    for (const flow of flows) flow.write('hello');
    await waitFor(() => proxy.stats().bytesForwarded >= 15, 'the flows to reach the server');
    const errors = flows.map((flow) => new Promise<Error>((resolve) => flow.once('error', resolve)));
    const started = Date.now();
    // The server's connection dies abruptly (TCP reset), as when its process crashes.
    cutter.cut();
    const failures = await Promise.all(errors);
    expect(Date.now() - started).toBeLessThan(1000);
    for (const err of failures) {
      expect(err).toMatchObject({ code: 'ERR_CONNECTION_LOST' });
      expect(err.message).toContain(`server connection of ${server.routingId}`);
    }

    const other = net.manager();
    const registration = await other.proxyListen('main', proxy.endpoint);
    await proxy.close();
    const reason = await registration.closed;
    expect(reason).toBeInstanceOf(Error);
    expect(other.status().proxyErrors.get('main')).toBe(reason);
  });

  it('bounds proxy buffering while the reader of one flow is paused, and another flow on the same VC completes 64 MiB', async () => {
    const budget = 16 * MiB;
    const proxy = await net.proxy({ bufferBudget: budget, connectionBufferBudget: budget });
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    const paused: Flow[] = [];
    void (async () => {
      for await (const flow of server) {
        flow.on('error', () => undefined);
        // The first flow is never read; the others echo.
        if (paused.length === 0) paused.push(flow);
        else flow.pipe(flow);
      }
    })();
    const client = net.manager();
    const endpoint = server.status().endpoints[0];

    const stalled = await client.dial(endpoint);
    stalled.on('error', () => undefined);
    const stalledWriter = writeRandom(stalled, 256 * MiB, 64 * 1024, false).catch(() => undefined);
    await waitFor(() => paused.length === 1, 'the server to accept the stalled flow');

    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, proxy.stats().bufferedBytes);
    }, 5);
    const flow = await client.dial(endpoint);
    const [sent, received] = await Promise.all([writeRandom(flow, 64 * MiB), digestStream(flow)]);
    clearInterval(sampler);
    expect(received.sha256).toBe(sent);
    expect(flow.conn).toBe(stalled.conn);
    expect(peak).toBeLessThan(budget);
    expect(proxy.stats().peakConnectionBufferedBytes).toBeLessThan(budget);
    // The stalled flow is held back by its window, not buffered: the server holds at most one window of it.
    expect(paused[0].readableLength).toBeLessThanOrEqual(256 * 1024);
    expect(stalled.writableLength).toBeLessThanOrEqual(1 * MiB);
    stalled.destroy();
    await stalledWriter;
  });

  it('refuses a registration from a second connection without the key, and supersedes the old connection for the same key', async () => {
    const proxy = await net.proxy();
    const first = net.manager();
    const firstRegistration = await first.proxyListen('main', proxy.endpoint);
    const second = net.manager({ identity: first.identity });
    await second.proxyListen('main', proxy.endpoint);
    const reason = await firstRegistration.closed;
    expect(reason).toMatchObject({ code: 'ERR_SUPERSEDED' });
    expect(proxy.stats().registrations).toBe(1);

    void (async () => {
      for await (const flow of second) await flow.writeMsgAndClose(Buffer.from('second'));
    })();
    const client = net.manager();
    const flow = await client.dial(second.status().endpoints[0]);
    expect((await flow.readMsg()).toString()).toBe('second');
  });

  it('accepts flows in direct mode without a proxy', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    expect(server.status().endpoints).toEqual([endpoint]);
    serveEcho(server);
    const client = net.manager();
    const flow = await client.dial(endpoint);
    const [sent, received] = await Promise.all([writeRandom(flow, 8 * MiB), digestStream(flow)]);
    expect(received.sha256).toBe(sent);
    const again = await client.dial(endpoint);
    again.end('reuse');
    expect((await readAll(again)).toString()).toBe('reuse');
    expect(again.conn).toBe(flow.conn);
  });
});
