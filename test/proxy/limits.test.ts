import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { useNetwork } from '../fixtures.js';
import { waitFor } from '../helpers.js';

describe('proxy limits refuse with typed errors', () => {
  const net = useNetwork();

  it('refuses registrations past maxRegistrations', async () => {
    const proxy = await net.proxy({ maxRegistrations: 2 });
    await net.manager().proxyListen('main', proxy.endpoint);
    await net.manager().proxyListen('main', proxy.endpoint);
    await expect(net.manager().proxyListen('main', proxy.endpoint)).rejects.toMatchObject({
      code: 'ERR_REGISTRATION_REFUSED',
      message: expect.stringContaining('limit of 2 registered servers'),
    });
  });

  it('refuses VCs past maxVcsPerConnection with ERR_LIMIT', async () => {
    const proxy = await net.proxy({ maxVcsPerConnection: 2 });
    const servers = [net.manager(), net.manager(), net.manager()];
    for (const server of servers) await server.proxyListen('main', proxy.endpoint);
    const client = net.manager();
    await client.dial(servers[0].status().endpoints[0]);
    await client.dial(servers[1].status().endpoints[0]);
    await expect(client.dial(servers[2].status().endpoints[0])).rejects.toMatchObject({ code: 'ERR_LIMIT', message: expect.stringContaining('at most 2 VCs per connection') });
  });

  it('refuses VCs once the buffer budget is committed', async () => {
    const proxy = await net.proxy({ bufferBudget: 3 * 256 * 1024 });
    const a = net.manager();
    const b = net.manager();
    await a.proxyListen('main', proxy.endpoint);
    await b.proxyListen('main', proxy.endpoint);
    const client = net.manager();
    await client.dial(a.status().endpoints[0]);
    await expect(client.dial(b.status().endpoints[0])).rejects.toMatchObject({ code: 'ERR_LIMIT', message: expect.stringContaining('no buffer budget left') });
    expect(proxy.stats().reservedBytes).toBeLessThanOrEqual(3 * 256 * 1024);
  });

  it('refuses connections past maxConnectionsPerAddress, before any handshake', async () => {
    const proxy = await net.proxy({ maxConnectionsPerAddress: 1 });
    await net.manager().proxyListen('main', proxy.endpoint);
    await expect(net.manager().proxyListen('main', proxy.endpoint)).rejects.toMatchObject({ code: expect.stringMatching(/ERR_CONNECTION_LOST|ERR_UNREACHABLE/) });
    expect(proxy.stats().connectionsRefused).toBe(1);
  });

  it('closes a connection that has no VC and no registration after idleTimeout', async () => {
    const proxy = await net.proxy({ idleTimeout: 200 });
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    const client = net.manager({ vcIdleTimeout: 50, linkIdleTimeout: 60_000 });
    const flow = await client.dial(server.status().endpoints[0]);
    flow.destroy();
    await flow.conn.closed;
    await waitFor(() => proxy.stats().connections === 1, 'the idle client connection to be closed', 3000);
    expect(proxy.stats().registrations).toBe(1);
  });

  it('drops a connection that never completes the handshake', async () => {
    const proxy = await net.proxy({ handshakeTimeout: 200 });
    const socket = connect({ host: '127.0.0.1', port: proxy.port });
    socket.resume();
    const started = Date.now();
    await new Promise((resolve) => socket.once('close', resolve));
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(proxy.stats().connectionsRefused).toBe(1);
  });
});
