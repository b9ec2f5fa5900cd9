import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { Identity, type Proxy } from '../../src/index.js';
import { IngressDialer } from '../../src/ingress/dialer.js';
import { NameDirectory } from '../../src/ingress/names.js';
import { TlsPassthroughIngress, type TlsRefusal } from '../../src/ingress/tls.js';
import { TlsTermination } from '../../src/tunnel/tls-termination.js';
import type { FlowOrigin } from '../../src/tunnel/protocol.js';
import { useNetwork } from '../fixtures.js';
import { readAll, waitFor } from '../helpers.js';
import { makeCertificates, serveIngressFlows } from './fixtures.js';

const net = useNetwork({ checkLeaks: true });
const DOMAIN = 'tunnel.test';
const certs = makeCertificates([`myapp.${DOMAIN}`]);
afterAll(() => rmSync(certs.dir, { recursive: true, force: true }));

/** A proxy with a blind TLS ingress for *.tunnel.test, and a server registered as myapp that terminates TLS and answers what it heard. */
async function setup(options: { maxHelloBytes?: number; helloTimeout?: number } = {}): Promise<{ proxy: Proxy; port: number; refusals: TlsRefusal[]; origins: FlowOrigin[] }> {
  const ingressIdentity = Identity.generate();
  const names = new NameDirectory(DOMAIN, undefined, () => [], ingressIdentity.routingId);
  const proxy = await net.proxy({ registrationHook: names });
  const dialer = new IngressDialer(proxy, ingressIdentity, () => undefined);
  const ingress = await TlsPassthroughIngress.listen('127.0.0.1', 0, names, dialer, options);
  net.defer(async () => {
    await ingress.close();
    await dialer.close();
  });
  const refusals: TlsRefusal[] = [];
  ingress.on('refused', (refusal) => refusals.push(refusal));
  const server = net.manager();
  const registration = await server.proxyListen('proxy', proxy.endpoint, { hostname: 'myapp' });
  const tls = await TlsTermination.load(certs.cert, certs.key);
  const origins: FlowOrigin[] = [];
  serveIngressFlows(
    server,
    () => registration.ingress.routingId,
    (flow, origin) => {
      origins.push(origin!);
      const plain = tls.accept(flow);
      plain.on('data', (chunk: Buffer) => plain.end(`heard: ${chunk.toString()}`));
    },
  );
  return { proxy, port: ingress.port, refusals, origins };
}

function client(port: number, servername: string): TLSSocket {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca: certs.ca });
  net.defer(async () => socket.destroy());
  return socket;
}

/** How a TLS connection ends: the answer, or the error it failed with. */
async function exchange(port: number, servername: string, text = 'hello'): Promise<string> {
  const socket = client(port, servername);
  return new Promise<string>((resolve) => {
    socket.once('error', (err) => resolve(`error: ${err.message}`));
    socket.once('secureConnect', () => {
      socket.end(text);
      void readAll(socket).then((reply) => resolve(reply.toString()));
    });
  });
}

/** What a plain TCP client that sends `bytes` gets back before the ingress closes. */
async function rawExchange(port: number, bytes: Buffer | undefined): Promise<Buffer> {
  const socket = tcpConnect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  net.defer(async () => socket.destroy());
  if (bytes !== undefined) socket.write(bytes);
  return readAll(socket).catch(() => Buffer.alloc(0));
}

describe('blind TLS ingress by SNI', () => {
  it('carries a TLS connection whole to the server named by its SNI, which holds the only key; the client checks the certificate', async () => {
    const { port, origins } = await setup();
    expect(await exchange(port, `myapp.${DOMAIN}`)).toBe('heard: hello');
    expect(await exchange(port, `MyApp.${DOMAIN}`, 'again')).toBe('heard: again');
    expect(origins[0]).toMatchObject({ via: 'tls', host: `myapp.${DOMAIN}`, client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
  });

  it('refuses a ClientHello with no SNI, for an unknown host, or for a name whose server is offline, with an alert; the ingress keeps working', async () => {
    const { port, refusals } = await setup();
    expect(await exchange(port, '')).toMatch(/missing extension/i);
    expect(await exchange(port, `nobody.${DOMAIN}`)).toMatch(/unrecognized name/i);
    expect(await exchange(port, 'myapp.elsewhere.test')).toMatch(/unrecognized name/i);
    // A routing id's own name that no server holds right now.
    expect(await exchange(port, `${'a'.repeat(25)}q.${DOMAIN}`)).toMatch(/unrecognized name/i);
    expect(refusals.map((r) => r.reason)).toEqual([
      'the ClientHello names no server (SNI)',
      `no service is registered as nobody.${DOMAIN} (this proxy serves *.${DOMAIN})`,
      `no service is registered as myapp.elsewhere.test (this proxy serves *.${DOMAIN})`,
      `${'a'.repeat(25)}q.${DOMAIN} is not connected to the proxy right now`,
    ]);
    expect(await exchange(port, `myapp.${DOMAIN}`)).toBe('heard: hello');
  });

  it('closes on bytes that are not TLS, answers an oversize ClientHello with an alert, and drops a client that sends no ClientHello in time', async () => {
    const { port, refusals } = await setup({ maxHelloBytes: 256, helloTimeout: 200 });
    expect((await rawExchange(port, Buffer.from('GET / HTTP/1.1\r\nHost: myapp.tunnel.test\r\n\r\n'))).length).toBe(0);
    // A real ClientHello is larger than 256 bytes: handshake_failure (40).
    expect(await exchange(port, `myapp.${DOMAIN}`)).toMatch(/handshake failure/i);
    const silent = await rawExchange(port, Buffer.from([22, 3, 1]));
    expect(silent.length).toBe(0);
    await waitFor(() => refusals.length === 3, 'three refusals');
    expect(refusals.map((r) => r.reason)).toEqual([
      expect.stringContaining('does not start with a TLS handshake record'),
      expect.stringContaining("over this ingress's limit of 256"),
      'no complete ClientHello within 200 ms',
    ]);
  });
});
