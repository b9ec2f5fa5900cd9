import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Manager, Proxy } from '../../src/index.js';
import { waitFor } from '../helpers.js';

describe('proxy limits refuse with typed errors', () => {
  const cleanups: Array<() => Promise<unknown>> = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function manager(options: ConstructorParameters<typeof Manager>[0] = {}): Manager {
    const m = new Manager(options);
    cleanups.push(() => m.close());
    return m;
  }

  async function proxyWith(options: Parameters<typeof Proxy.listen>[0]): Promise<Proxy> {
    const proxy = await Proxy.listen(options);
    cleanups.push(() => proxy.close());
    return proxy;
  }

  it('refuses registrations past maxRegistrations', async () => {
    const proxy = await proxyWith({ maxRegistrations: 2 });
    await manager().proxyListen('main', proxy.endpoint);
    await manager().proxyListen('main', proxy.endpoint);
    await expect(manager().proxyListen('main', proxy.endpoint)).rejects.toMatchObject({
      code: 'ERR_REGISTRATION_REFUSED',
      message: expect.stringContaining('limit of 2 registered servers'),
    });
  });

  it('refuses VCs past maxVcsPerConnection with ERR_LIMIT', async () => {
    const proxy = await proxyWith({ maxVcsPerConnection: 2 });
    const servers = [manager(), manager(), manager()];
    for (const server of servers) await server.proxyListen('main', proxy.endpoint);
    const client = manager();
    await client.dial(servers[0].status().endpoints[0]);
    await client.dial(servers[1].status().endpoints[0]);
    await expect(client.dial(servers[2].status().endpoints[0])).rejects.toMatchObject({ code: 'ERR_LIMIT', message: expect.stringContaining('at most 2 VCs per connection') });
  });

  it('refuses VCs once the buffer budget is committed', async () => {
    const proxy = await proxyWith({ bufferBudget: 3 * 256 * 1024 });
    const a = manager();
    const b = manager();
    await a.proxyListen('main', proxy.endpoint);
    await b.proxyListen('main', proxy.endpoint);
    const client = manager();
    await client.dial(a.status().endpoints[0]);
    await expect(client.dial(b.status().endpoints[0])).rejects.toMatchObject({ code: 'ERR_LIMIT', message: expect.stringContaining('no buffer budget left') });
    expect(proxy.stats().reservedBytes).toBeLessThanOrEqual(3 * 256 * 1024);
  });

  it('refuses connections past maxConnectionsPerAddress, before any handshake', async () => {
    const proxy = await proxyWith({ maxConnectionsPerAddress: 1 });
    await manager().proxyListen('main', proxy.endpoint);
    await expect(manager().proxyListen('main', proxy.endpoint)).rejects.toMatchObject({ code: expect.stringMatching(/ERR_CONNECTION_LOST|ERR_UNREACHABLE/) });
    expect(proxy.stats().connectionsRefused).toBe(1);
  });

  it('closes a connection that has no VC and no registration after idleTimeout', async () => {
    const proxy = await proxyWith({ idleTimeout: 200 });
    const server = manager();
    await server.proxyListen('main', proxy.endpoint);
    const client = manager({ vcIdleTimeout: 50, linkIdleTimeout: 60_000 });
    const flow = await client.dial(server.status().endpoints[0]);
    flow.destroy();
    await flow.conn.closed;
    await waitFor(() => proxy.stats().connections === 1, 'the idle client connection to be closed', 3000);
    expect(proxy.stats().registrations).toBe(1);
  });

  it('drops a connection that never completes the handshake', async () => {
    const proxy = await proxyWith({ handshakeTimeout: 200 });
    const socket = connect({ host: '127.0.0.1', port: proxy.port });
    socket.resume();
    const started = Date.now();
    await new Promise((resolve) => socket.once('close', resolve));
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(proxy.stats().connectionsRefused).toBe(1);
  });
});
