import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Identity, Proxy, UnreachableError } from '../../src/index.js';
import { HopConnection } from '../../src/hop/connection.js';
import { useNetwork } from '../fixtures.js';
import { waitFor } from '../helpers.js';

const SHUTTING_DOWN = 'the proxy is shutting down';

/** Settles with `promise`'s outcome, or with a timeout error after `ms`: a generous bound, not a benchmark. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
    }),
  ]);
}

describe('proxy shutdown without drain time', () => {
  const net = useNetwork({ checkLeaks: true });

  it('tells a registered server and a client with an open flow that the proxy is going away, not that a connection was lost', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    const registration = await server.proxyListen('main', proxy.endpoint);
    const accepted = (async () => {
      for await (const flow of server) return flow;
      throw new Error('the server accepted no flow');
    })();

    const client = net.manager();
    const flow = await client.dial(registration.endpoint);
    await flow.writeMsg(Buffer.from('hello'));
    const serverFlow = await accepted;
    expect((await serverFlow.readMsg()).toString()).toBe('hello');
    const clientFailed = new Promise<Error>((resolve) => flow.once('error', resolve));
    const serverFailed = new Promise<Error>((resolve) => serverFlow.once('error', resolve));

    await within(proxy.close(), 5000, 'proxy close');

    const ended = await within(registration.closed, 5000, 'the registration ending');
    expect(ended).toMatchObject({ code: 'ERR_GOING_AWAY' });
    expect(ended!.message).toContain(SHUTTING_DOWN);
    expect(server.status().proxyErrors.get('main')).toBe(ended);

    const clientError = await within(clientFailed, 5000, 'the client flow failing');
    expect(clientError).toMatchObject({ code: 'ERR_GOING_AWAY' });
    expect(clientError.message).toContain(SHUTTING_DOWN);
    const serverError = await within(serverFailed, 5000, 'the server flow failing');
    expect(serverError).toMatchObject({ code: 'ERR_GOING_AWAY' });
    expect(serverError.message).toContain(SHUTTING_DOWN);
  });

  it('resolves close() within a bounded time while a connected peer has stopped reading', async () => {
    const proxy = await net.proxy();
    // A busy server and client keep a VC open, so the proxy cannot simply close idle connections.
    const server = net.manager();
    const registration = await server.proxyListen('main', proxy.endpoint);
    void (async () => {
      for await (const flow of server) flow.on('error', () => undefined);
    })();
    const client = net.manager();
    const flow = await client.dial(registration.endpoint);
    flow.on('error', () => undefined);
    flow.write('hello');
    await waitFor(() => proxy.stats().vcs === 1, 'the VC to open');

    // A peer that proved its key, then stopped reading: it never sees the proxy's FIN, so never closes.
    const socket = connect({ host: '127.0.0.1', port: proxy.port });
    net.defer(async () => {
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const stalled = await HopConnection.establish({ socket, identity: Identity.generate(), initiator: true, keepAliveInterval: 0, expectedPeer: proxy.routingId });
    stalled.start(() => undefined);
    await waitFor(() => proxy.stats().connections === 3, 'the stalled peer to be adopted');
    socket.pause();

    await within(proxy.close(), 5000, 'proxy close');
    expect(proxy.stats().connections).toBe(0);
    expect(await within(registration.closed, 5000, 'the registration ending')).toMatchObject({ code: 'ERR_GOING_AWAY' });
  });
});

describe('Proxy.listen', () => {
  const net = useNetwork();

  it('rejects an address in use with ERR_UNREACHABLE and a one-line reason, not a raw EADDRINUSE', async () => {
    const first = await net.proxy();
    const err = await Proxy.listen({ port: first.port }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UNREACHABLE', message: `cannot listen on 127.0.0.1:${first.port}: the address is already in use` });
    expect(err).toBeInstanceOf(UnreachableError);
  });
});
