import { describe, expect, it } from 'vitest';
import { addressGroup } from '../../src/proxy/admission.js';
import { useNetwork } from '../fixtures.js';
import { waitFor } from '../helpers.js';

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

describe('proxy admission: wrong tokens and address groups', () => {
  const net = useNetwork();

  it('closes the connection on a wrong token, and locks out an address group that keeps guessing', async () => {
    const proxy = await net.proxy({ registrationToken: 'right', maxTokenFailures: 3 });
    for (let guess = 0; guess < 3; guess++) {
      const guesser = net.manager();
      await expect(guesser.proxyListen('main', proxy.endpoint, { token: `wrong-${guess}` })).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED' });
      await waitFor(() => proxy.stats().connections === 0, 'the guessing connection to be closed');
    }
    // The fourth attempt from this address is refused before the handshake, even with the right token.
    const late = net.manager();
    await expect(late.proxyListen('main', proxy.endpoint, { token: 'right' })).rejects.toMatchObject({ code: expect.stringMatching(/ERR_CONNECTION_LOST|ERR_UNREACHABLE/) });
    expect(proxy.stats().registrations).toBe(0);
  });

  it('groups IPv6 sources by /64 (or the prefix given), and IPv4 and IPv4-mapped sources by address', () => {
    expect(addressGroup('2001:db8:1:2:aaaa::1')).toBe(addressGroup('2001:db8:1:2:ffff:eeee:dddd:cccc'));
    expect(addressGroup('2001:db8:1:2::1')).not.toBe(addressGroup('2001:db8:1:3::1'));
    expect(addressGroup('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(addressGroup('2001:db8:1:2::1', 48)).toBe(addressGroup('2001:db8:1:ffff::1', 48));
    expect(addressGroup('2001:db8:1:2::1', 56)).toBe('2001:db8:1:0::/56');
    expect(addressGroup('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressGroup('192.0.2.7')).toBe('192.0.2.7');
    expect(addressGroup('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressGroup('::1')).toBe('0:0:0:0::/64');
  });
});
