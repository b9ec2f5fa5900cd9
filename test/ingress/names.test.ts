import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Identity } from '../../src/id/identity.js';
import { routingIdLabel } from '../../src/id/hostname.js';
import { NameDirectory, namesFile } from '../../src/ingress/names.js';
import { useNetwork } from '../fixtures.js';

const DOMAIN = 'tunnel.example.com';

function directory(file: string | undefined, ingress = Identity.generate()): NameDirectory {
  return new NameDirectory(DOMAIN, file, (hostname) => [`http://${hostname}/`], ingress.routingId);
}

describe('names of the web ingress', () => {
  const net = useNetwork({ checkLeaks: true });

  it('gives a registration its hostnames, URLs and the ingress routing id; a proxy without ingress gives none', async () => {
    const ingress = Identity.generate();
    const proxy = await net.proxy({ registrationHook: directory(undefined, ingress) });
    const server = net.manager();
    const named = await server.proxyListen('web', proxy.endpoint, { hostname: 'myapp' });
    const label = routingIdLabel(server.routingId);
    expect(named.ingress).toEqual({
      hostnames: [`myapp.${DOMAIN}`, `${label}.${DOMAIN}`],
      urls: [`http://myapp.${DOMAIN}/`, `http://${label}.${DOMAIN}/`],
      tcp: [],
      routingId: ingress.routingId.toString(),
    });
    // Asking for no name still tells the routing id name; a proxy without ingress tells nothing.
    expect((await net.manager().proxyListen('unnamed', proxy.endpoint)).ingress.hostnames).toEqual([expect.stringMatching(new RegExp(`^[a-z2-7]{26}\\.${DOMAIN.replaceAll('.', '\\.')}$`))]);
    const plain = await net.proxy();
    expect((await net.manager().proxyListen('plain', plain.endpoint)).ingress).toEqual({ hostnames: [], urls: [], tcp: [] });
    // A proxy without ingress ignores the name.
    expect((await net.manager().proxyListen('x', plain.endpoint, { hostname: 'myapp' })).ingress).toEqual({ hostnames: [], urls: [], tcp: [] });
  });

  it('keeps a name for the key that claimed it: the same key gets it back, another key is refused with ERR_NAME_TAKEN, across restarts', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ridproxy-names-')), 'state', 'names.json');
    const identity = Identity.generate();
    let proxy = await net.proxy({ registrationHook: directory(file) });
    const first = net.manager({ identity });
    const registration = await first.proxyListen('web', proxy.endpoint, { hostname: 'myapp' });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8')).names.myapp.routingId).toBe(identity.routingId.toString());

    const thief = net.manager();
    await expect(thief.proxyListen('web', proxy.endpoint, { hostname: 'myapp' })).rejects.toMatchObject({
      code: 'ERR_NAME_TAKEN',
      message: expect.stringContaining(`the name myapp.${DOMAIN} is reserved for another key`),
    });
    // Another proxy on the same file (a restart): the reservation holds, and the key gets it back.
    registration.close();
    await proxy.close();
    proxy = await net.proxy({ registrationHook: directory(file) });
    await expect(thief.proxyListen('web2', proxy.endpoint, { hostname: 'myapp' })).rejects.toMatchObject({ code: 'ERR_NAME_TAKEN' });
    expect((await first.proxyListen('web2', proxy.endpoint, { hostname: 'myapp' })).ingress.hostnames[0]).toBe(`myapp.${DOMAIN}`);
    // Released by the operator, it goes to the next key that asks.
    expect(namesFile(file).release('myapp')).toBe(true);
    expect(namesFile(file).release('myapp')).toBe(false);
  });

  it('refuses names that are not DNS labels before sending anything, and resolves hosts to routing ids', async () => {
    const proxy = await net.proxy({ registrationHook: directory(undefined) });
    const server = net.manager();
    await expect(server.proxyListen('web', proxy.endpoint, { hostname: 'Bad_Name' })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    const names = directory(undefined);
    const rid = Identity.generate().routingId;
    names.register(rid.toString(), { name: 'shop' });
    expect(names.resolve(`SHOP.${DOMAIN}.`)?.routingId.equals(rid)).toBe(true);
    expect(names.resolve(`${routingIdLabel(rid)}.${DOMAIN}`)?.routingId.equals(rid)).toBe(true);
    expect(names.resolve(`a.shop.${DOMAIN}`)).toBeUndefined();
    expect(names.resolve('shop.example.org')).toBeUndefined();
    expect(names.register(rid.toString(), { name: 42 })).toMatchObject({ refused: { message: 'the name asked for is not a string' } });
  });
});
