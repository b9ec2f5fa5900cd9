import { describe, expect, it } from 'vitest';
import type { Flow, Manager } from '../../src/index.js';
import { serveEcho, useNetwork } from '../fixtures.js';
import { delay, readAll } from '../helpers.js';

/** Dials `endpoint` ten times at once; the first dial is aborted after 1 ms, while the shared setup is under way. */
async function tenDialsFirstAborted(client: Manager, endpoint: string): Promise<PromiseSettledResult<Flow>[]> {
  const controller = new AbortController();
  const dials = [client.dial(endpoint, { signal: controller.signal }), ...Array.from({ length: 9 }, () => client.dial(endpoint))];
  setTimeout(() => controller.abort(), 1);
  return Promise.allSettled(dials);
}

async function echoes(flow: Flow, text: string): Promise<string> {
  flow.end(text);
  return (await readAll(flow)).toString();
}

/** Ten concurrent dials with the first aborted: only that one fails, and the other nine give their flows. */
async function nineOfTenDialed(client: Manager, endpoint: string): Promise<Flow[]> {
  const [first, ...rest] = await tenDialsFirstAborted(client, endpoint);
  expect(first).toMatchObject({ status: 'rejected', reason: { code: 'ERR_ABORTED' } });
  expect(rest.map((r) => r.status)).toEqual(Array(9).fill('fulfilled'));
  return rest.map((r) => (r as PromiseFulfilledResult<Flow>).value);
}

describe('dials sharing one setup', () => {
  const net = useNetwork({ checkLeaks: true });

  it('ten concurrent dials to a direct listener: aborting the first fails it alone', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    serveEcho(server);
    const client = net.manager();
    const flows = await nineOfTenDialed(client, endpoint);
    expect(new Set(flows.map((f) => f.conn)).size).toBe(1);
    expect(await Promise.all(flows.map((f, i) => echoes(f, `flow ${i}`)))).toEqual(flows.map((_, i) => `flow ${i}`));
  });

  it('ten concurrent dials through a proxy: aborting the first fails it alone', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const { endpoint } = await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    const client = net.manager();
    const flows = await nineOfTenDialed(client, endpoint);
    expect(await Promise.all(flows.map((f, i) => echoes(f, `flow ${i}`)))).toEqual(flows.map((_, i) => `flow ${i}`));
    expect(proxy.stats().vcs).toBe(1);
  });

  it('a dial started after the only dial waiting on a setup was aborted sets up afresh and succeeds', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const { endpoint } = await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    for (const wait of [2, 0]) {
      const client = net.manager();
      const controller = new AbortController();
      const aborted = client.dial(endpoint, { signal: controller.signal }).catch((err: unknown) => err);
      await delay(1);
      controller.abort();
      // 2 ms later, and in the very tick of the abort, before the abandoned setup has wound down.
      if (wait > 0) await delay(wait);
      const next = client.dial(endpoint);
      expect(await aborted).toMatchObject({ code: 'ERR_ABORTED' });
      expect(await echoes(await next, `after ${wait} ms`)).toBe(`after ${wait} ms`);
    }
  });

  it('a dial whose own timeout passes gets ERR_TIMEOUT; the others sharing its setup do not notice', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    serveEcho(server);
    const client = net.manager();
    const results = await Promise.allSettled([client.dial(endpoint, { timeout: 1 }), client.dial(endpoint), client.dial(endpoint, { timeout: 10_000 })]);
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { code: 'ERR_TIMEOUT' } });
    expect(results.slice(1).map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
  });

  it("dials to two routing ids on one proxy share the hop connection, not the first dial's abort", async () => {
    const proxy = await net.proxy();
    const a = net.manager();
    const b = net.manager();
    const { endpoint: aEndpoint } = await a.proxyListen('main', proxy.endpoint);
    const { endpoint: bEndpoint } = await b.proxyListen('main', proxy.endpoint);
    serveEcho(b);
    const client = net.manager();
    const controller = new AbortController();
    const toA = client.dial(aEndpoint, { signal: controller.signal });
    const toB = client.dial(bEndpoint);
    setTimeout(() => controller.abort(), 1);
    await expect(toA).rejects.toMatchObject({ code: 'ERR_ABORTED' });
    expect(await echoes(await toB, 'b')).toBe('b');
    expect(proxy.stats().connections).toBe(3);
  });

  it('a setup every dial gave up on is torn down, and close() ends a setup still under way', async () => {
    const { createServer } = await import('node:net');
    // Accepts and never answers: the hop handshake never ends on its own.
    const silent = createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    net.defer(() => new Promise((resolve) => silent.close(resolve)));
    const port = (silent.address() as { port: number }).port;
    const connections = (): Promise<number> => new Promise((resolve, reject) => silent.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    const client = net.manager();
    const controllers = [new AbortController(), new AbortController()];
    const dials = controllers.map((c) => client.dial(`127.0.0.1:${port}`, { signal: c.signal }).catch((err: unknown) => err));
    await delay(20);
    expect(await connections()).toBe(1);
    controllers[0].abort();
    expect(await dials[0]).toMatchObject({ code: 'ERR_ABORTED' });
    await delay(20);
    expect(await connections()).toBe(1);
    controllers[1].abort();
    expect(await dials[1]).toMatchObject({ code: 'ERR_ABORTED' });
    await delay(20);
    expect(await connections()).toBe(0);

    const pending = client.dial(`127.0.0.1:${port}`);
    await delay(20);
    await client.close();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_MANAGER_CLOSED' });
  });
});

describe('a manager that only dials', () => {
  const net = useNetwork({ checkLeaks: true });

  /** The server opens a flow back on the VC the client dialed and reads what comes back. */
  async function callBack(server: Manager, client: Manager, endpoint: string): Promise<void> {
    expect(client.isListening).toBe(false);
    serveEcho(client);
    const accepted = server.accept();
    const flow = await client.dial(endpoint);
    flow.end('hello');
    flow.resume();
    const incoming = await accepted;
    incoming.end();
    expect((await readAll(incoming)).toString()).toBe('hello');
    const back = server.dialCached(incoming.remoteEndpoint);
    expect(back.conn).toBe(incoming.conn);
    expect(await echoes(back, 'called back')).toBe('called back');
  }

  it('accepts and echoes a flow its peer opens back on the VC it dialed directly', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    await callBack(server, net.manager(), endpoint);
  });

  it('accepts and echoes a flow its peer opens back on the VC it dialed through a proxy', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const { endpoint } = await server.proxyListen('main', proxy.endpoint);
    await callBack(server, net.manager(), endpoint);
    expect(proxy.stats().vcs).toBe(1);
  });

  it('still resets flows back from a peer its authorize refuses', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager({ authorize: (peer) => !peer.routingId.equals(server.routingId) });
    serveEcho(client);
    const accepted = server.accept();
    (await client.dial(endpoint)).end();
    const back = server.dialCached((await accepted).remoteEndpoint);
    const err = await new Promise<Error>((resolve) => {
      back.once('error', resolve);
      back.resume();
      back.write('let me in');
    });
    expect(err).toMatchObject({ code: 'ERR_STREAM_RESET' });
  });

  it('reports an address-less endpoint while it listens nowhere, which peers dial back over its VCs', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const serverEndpoint = (await server.proxyListen('main', proxy.endpoint)).endpoint;
    const client = net.manager();
    const own = `ridp:///${client.routingId}`;
    expect(client.status()).toMatchObject({ endpoints: [own], routingId: client.routingId.toString() });
    const registration = await client.proxyListen('main', proxy.endpoint);
    expect(client.status().endpoints).toEqual([registration.endpoint]);
    await client.stopListening();
    expect(client.status().endpoints).toEqual([own]);

    // The server was handed only the client's status endpoint, and calls it back on the VC the client dialed.
    const incoming = server.accept();
    (await client.dial(serverEndpoint)).end();
    await incoming;
    serveEcho(client);
    expect(await echoes(await server.dial(own), 'dial')).toBe('dial');
    expect(await echoes(server.dialCached(own), 'dialCached')).toBe('dialCached');

    // Without such a VC the endpoint leads nowhere: a clear error, and no attempt to connect.
    const stranger = net.manager();
    await expect(stranger.dial(own)).rejects.toMatchObject({ code: 'ERR_NO_CACHED_VC', message: expect.stringMatching(/names no address/) });
    expect(() => stranger.dialCached(own)).toThrow(expect.objectContaining({ code: 'ERR_NO_CACHED_VC' }));
    await expect(stranger.proxyListen('x', own)).rejects.toMatchObject({ code: 'ERR_INVALID_ENDPOINT', message: expect.stringMatching(/names no address to connect to/) });
  });

  it('waits in accept() across stopListening(): pending calls end with ERR_NOT_LISTENING, later ones get call backs', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager();
    const first = client.accept();
    await client.stopListening();
    await expect(first).rejects.toMatchObject({ code: 'ERR_NOT_LISTENING' });

    const incoming = server.accept();
    (await client.dial(endpoint)).end();
    const back = server.dialCached((await incoming).remoteEndpoint);
    // The client reads with for-await, which resets the flow once it has the reply.
    back.on('error', () => undefined);
    back.end('queued');
    // Queued before anyone accepts it, and kept by a stopListening() that comes in between.
    await delay(20);
    await client.stopListening();
    expect((await readAll(await client.accept())).toString()).toBe('queued');
    back.resume();

    const closing = client.accept();
    await client.close();
    await expect(closing).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_(NOT_LISTENING|MANAGER_CLOSED)$/) });
  });
});
