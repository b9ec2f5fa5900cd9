import { afterEach, describe, expect, it } from 'vitest';
import { Manager, Proxy } from '../../src/index.js';

describe('proxy admission: tokens and the registration allow-list', () => {
  const cleanups: Array<() => Promise<unknown>> = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function manager(): Manager {
    const m = new Manager();
    cleanups.push(() => m.close());
    return m;
  }

  async function proxyWith(options: Parameters<typeof Proxy.listen>[0]): Promise<Proxy> {
    const proxy = await Proxy.listen(options);
    cleanups.push(() => proxy.close());
    return proxy;
  }

  it('refuses a registration without the token, with a message naming the proxy', async () => {
    const proxy = await proxyWith({ registrationToken: 's3cret' });
    const server = manager();
    const err = await server.proxyListen('main', proxy.endpoint).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect((err as Error).message).toContain(`proxy ${proxy.endpoint} requires a valid registration token`);
    expect(server.status().proxyErrors.get('main')).toBe(err);
    await expect(server.proxyListen('main', proxy.endpoint, { token: 'wrong' })).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    const registration = await server.proxyListen('main', proxy.endpoint, { token: 's3cret' });
    expect(registration.endpoint).toContain(server.routingId.toString());
  });

  it('refuses a routing id that is not on the allow-list', async () => {
    const allowed = manager();
    const proxy = await proxyWith({ registrationAllowList: new Set([allowed.routingId.toString()]) });
    await allowed.proxyListen('main', proxy.endpoint);
    const stranger = manager();
    const err = await stranger.proxyListen('main', proxy.endpoint).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect((err as Error).message).toContain(`routing id ${stranger.routingId} is not on the allow-list`);
    expect(proxy.stats().registrations).toBe(1);
  });

  it('refuses a dial without the dial token, and lets it through with it', async () => {
    const proxy = await proxyWith({ dialToken: 'letmein' });
    const server = manager();
    await server.proxyListen('main', proxy.endpoint);
    void (async () => {
      for await (const flow of server) await flow.writeMsgAndClose(Buffer.from('hi'));
    })();
    const client = manager();
    const endpoint = server.status().endpoints[0];
    await expect(client.dial(endpoint)).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED', message: `proxy ${proxy.endpoint} requires a valid dial token` });
    const flow = await client.dial(endpoint, { token: 'letmein' });
    expect((await flow.readMsg()).toString()).toBe('hi');
  });
});
