import { describe, expect, it } from 'vitest';
import { Endpoint, Manager } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';
import { delay, readAll } from '../helpers.js';

describe('Manager API', () => {
  const net = useNetwork({ checkLeaks: true });

  it('rejects pending accepts with ERR_NOT_LISTENING on stopListening, and can listen again', async () => {
    const server = net.manager();
    const first = await server.listen('127.0.0.1:0');
    const pending = server.accept();
    await server.stopListening();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_NOT_LISTENING' });
    expect(server.status().endpoints).toEqual([`ridp:///${server.routingId}`]);

    const second = await server.listen('127.0.0.1:0');
    expect(second).not.toBe(first);
    const client = net.manager();
    const flow = await client.dial(second);
    flow.end('again');
    const accepted = await server.accept();
    expect((await readAll(accepted)).toString()).toBe('again');
  });

  it('refuses VCs once the manager stopped listening, with a typed reason', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager();
    await client.dial(endpoint);
    await server.stopListening();
    const other = net.manager();
    // The listener is gone, so a new process cannot even connect.
    await expect(other.dial(endpoint)).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' });
  });

  it('reports status changes through dirty, and proxy errors by name', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const before = server.status();
    expect(before.endpoints).toEqual([`ridp:///${server.routingId}`]);
    const registration = await server.proxyListen('relay', proxy.endpoint);
    await before.dirty;
    const during = server.status();
    expect(during.endpoints).toEqual([registration.endpoint]);
    expect(during.proxyErrors.get('relay')).toBeNull();

    await proxy.close();
    await during.dirty;
    await registration.closed;
    const after = server.status();
    expect(after.endpoints).toEqual([`ridp:///${server.routingId}`]);
    expect(after.proxyErrors.get('relay')).toMatchObject({ code: 'ERR_GOING_AWAY' });
  });

  it('rejects a second registration under the same name, and a registration on a proxy with the wrong routing id', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('relay', proxy.endpoint);
    await expect(server.proxyListen('relay', proxy.endpoint)).rejects.toMatchObject({ code: 'ERR_NAME_IN_USE' });
    const impostor = new Endpoint(proxy.host, proxy.port, net.manager().routingId);
    await expect(server.proxyListen('other', impostor)).rejects.toMatchObject({ code: 'ERR_AUTHENTICATION' });
  });

  it('dialCached only uses an existing VC', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager();
    expect(() => client.dialCached(endpoint)).toThrow(expect.objectContaining({ code: 'ERR_NO_CACHED_VC' }));
    const flow = await client.dial(endpoint);
    const cached = client.dialCached(endpoint);
    expect(cached.conn).toBe(flow.conn);
  });

  it('closes an idle VC after vcIdleTimeout, unless a regular flow keeps it; side-channel flows do not', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    void (async () => {
      for await (const flow of server) {
        flow.on('error', () => undefined);
        flow.on('end', () => flow.end());
        flow.resume();
      }
    })();
    const client = net.manager({ vcIdleTimeout: 150 });
    const side = await client.dial(endpoint, { sideChannel: true });
    side.on('error', () => undefined);
    await side.conn.closed;
    expect(side.destroyed).toBe(true);

    const regular = await client.dial(endpoint);
    await delay(400);
    expect(regular.conn.isOpen).toBe(true);
    regular.end();
    regular.resume();
    await regular.conn.closed;
  });

  it('delivers length-prefixed messages with readMsg / writeMsg, and reports a short end', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    void (async () => {
      for await (const flow of server) {
        const first = await flow.readMsg();
        const second = await flow.readMsg();
        await flow.writeMsg(Buffer.from(`${first.length}:${second.length}`));
        await flow.writeMsgAndClose(first, second);
      }
    })();
    const client = net.manager();
    const flow = await client.dial(endpoint);
    const big = Buffer.alloc(3 << 20, 9);
    await flow.writeMsg(Buffer.from('a'), Buffer.from('bc'));
    await flow.writeMsg(big);
    expect((await flow.readMsg()).toString()).toBe(`3:${big.length}`);
    const echoed = await flow.readMsg();
    expect(echoed.length).toBe(3 + big.length);
    await expect(flow.readMsg()).rejects.toMatchObject({ code: 'ERR_END_OF_FLOW' });
  });

  it('lets the server open flows back to a dialer that listens, over the same VC', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    const client = net.manager();
    await client.proxyListen('main', proxy.endpoint);
    void (async () => {
      for await (const flow of server) {
        // Call the client back over the VC it opened.
        const back = server.dialCached(flow.remoteEndpoint);
        // The client reads with for-await, which resets the flow once it has the reply.
        back.on('error', () => undefined);
        back.end('called back');
        flow.resume();
      }
    })();
    const flow = await client.dial(server.status().endpoints[0]);
    flow.end();
    const back = await client.accept();
    expect((await readAll(back)).toString()).toBe('called back');
    expect(back.conn).toBe(flow.conn);
    expect(back.remotePublicKey.equals(server.identity.publicKey)).toBe(true);
    expect(proxy.stats().vcs).toBe(1);
  });

  it('fails a dial with ERR_TIMEOUT or ERR_ABORTED, promptly', async () => {
    const { createServer } = await import('node:net');
    // A TCP server that accepts and never answers: the handshake can only time out.
    const silent = createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    net.defer(() => new Promise((resolve) => silent.close(resolve)));
    const port = (silent.address() as { port: number }).port;
    const client = net.manager();
    const started = Date.now();
    await expect(client.dial(`127.0.0.1:${port}`, { timeout: 200 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(1000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await expect(client.dial(`127.0.0.1:${port}`, { signal: controller.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
  });

  it('takes 30 concurrent incoming handshakes without a listener-leak warning', async () => {
    // The server's authorize holds every handshake until all 30 are in progress at once.
    let waiting = 0;
    let releaseAll!: () => void;
    const allWaiting = new Promise<void>((resolve) => (releaseAll = resolve));
    const server = net.manager({
      authorize: async () => {
        if (++waiting === 30) releaseAll();
        await allWaiting;
        return true;
      },
    });
    const endpoint = await server.listen('127.0.0.1:0');
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const flows = await Promise.all(Array.from({ length: 30 }, () => net.manager().dial(endpoint)));
      expect(flows).toHaveLength(30);
      // Warnings are emitted on the next tick.
      await delay(20);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.name)).toEqual([]);
  });

  it('fails every call after close with ERR_MANAGER_CLOSED', async () => {
    const m = new Manager();
    await m.close();
    await expect(m.dial('127.0.0.1:1')).rejects.toMatchObject({ code: 'ERR_MANAGER_CLOSED' });
    await expect(m.accept()).rejects.toMatchObject({ code: 'ERR_MANAGER_CLOSED' });
    await expect(m.listen('127.0.0.1:0')).rejects.toMatchObject({ code: 'ERR_MANAGER_CLOSED' });
  });
});
