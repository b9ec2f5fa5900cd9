import { describe, expect, it } from 'vitest';
import { useNetwork } from '../fixtures.js';

describe('proxy admission: tokens and the registration allow-list', () => {
  const net = useNetwork();

  it('refuses a registration without the token, with a message naming the proxy', async () => {
    const proxy = await net.proxy({ registrationToken: 's3cret' });
    const server = net.manager();
    const err = await server.proxyListen('main', proxy.endpoint).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect((err as Error).message).toContain(`proxy ${proxy.endpoint} requires a valid registration token`);
    expect(server.status().proxyErrors.get('main')).toBe(err);
    await expect(server.proxyListen('main', proxy.endpoint, { token: 'wrong' })).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    const registration = await server.proxyListen('main', proxy.endpoint, { token: 's3cret' });
    expect(registration.endpoint).toContain(server.routingId.toString());
  });

  it('refuses a routing id that is not on the allow-list', async () => {
    const allowed = net.manager();
    const proxy = await net.proxy({ registrationAllowList: new Set([allowed.routingId.toString()]) });
    await allowed.proxyListen('main', proxy.endpoint);
    const stranger = net.manager();
    const err = await stranger.proxyListen('main', proxy.endpoint).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect((err as Error).message).toContain(`routing id ${stranger.routingId} is not on the allow-list`);
    expect(proxy.stats().registrations).toBe(1);
  });

  it('refuses a dial without the dial token, and lets it through with it', async () => {
    const proxy = await net.proxy({ dialToken: 'letmein' });
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    void (async () => {
      for await (const flow of server) await flow.writeMsgAndClose(Buffer.from('hi'));
    })();
    const client = net.manager();
    const endpoint = server.status().endpoints[0];
    await expect(client.dial(endpoint)).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED', message: `proxy ${proxy.endpoint} requires a valid dial token` });
    const flow = await client.dial(endpoint, { token: 'letmein' });
    expect((await flow.readMsg()).toString()).toBe('hi');
  });
});
