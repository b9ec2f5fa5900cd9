import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { request as httpsRequest, createServer as createHttpsServer } from 'node:https';
import { connect as tcpConnect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { loopbackLookup, readAll, startRelay, waitFor, type Relay } from '../helpers.js';
import { readme } from '../readme.js';
import { freePortRange, makeCertificates } from '../ingress/fixtures.js';
import { freePort, isolatedConfig, killAll, runCli, runToExit, type CliProcess } from './cli.js';

const DOMAIN = 'tunnel.test';
const certs = makeCertificates([`myapp.${DOMAIN}`]);
const wildcard = makeCertificates([`*.${DOMAIN}`]);
const renewed = makeCertificates([`*.${DOMAIN}`]);
const servers: Array<Server | HttpServer> = [];
const relays: Relay[] = [];

afterAll(() => {
  for (const made of [certs, wildcard, renewed]) rmSync(made.dir, { recursive: true, force: true });
});
afterEach(async () => {
  await killAll();
  await Promise.all(relays.splice(0).map((relay) => relay.close()));
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function listening<T extends Server | HttpServer>(server: T): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** The lines a command printed on stdout once it printed `count` of them. */
async function lines(cli: CliProcess, count: number): Promise<string[]> {
  await cli.firstLine;
  await waitFor(() => cli.stdout().split('\n').length > count, `${count} lines on stdout`, 20_000);
  return cli.stdout().split('\n').slice(0, count);
}

const MiB = 1 << 20;
/** A response body no 64-byte window of which lacks the marker: any plaintext seen on a wire would show it. */
const BODY = Buffer.alloc(MiB);
for (let i = 0; i < BODY.length; i += 64) BODY.write(`ridproxy-secret-response-${String(i).padStart(8, '0')}-`.padEnd(64, '#'), i, 'latin1');
const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** An HTTPS request through the ingress for `host`, trusting only the test's CA (`ca`: another one). */
function httpsGet(port: number, host: string, ca = certs.ca): Promise<{ status: number; body: Buffer; authorized: boolean; subject: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, servername: host, headers: { host, 'x-secret': 'ridproxy-secret-request' }, ca, path: '/', agent: false }, (res) => {
      const socket = res.socket as TLSSocket;
      const authorized = socket.authorized;
      const subject = String(socket.getPeerCertificate().subject?.CN);
      void readAll(res).then((body) => resolve({ status: res.statusCode ?? 0, body, authorized, subject }), reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** How a TLS handshake with `servername` (none when empty) ends. */
function handshake(port: number, servername: string, ca = certs.ca): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca });
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err) => resolve(err.message));
  });
}

describe('web ingress: blind HTTPS by SNI (proxy start --tls-passthrough, serve --tls-cert)', () => {
  it('a TLS client validates the serve\'s certificate for myapp.<domain> end to end; relays recording the proxy\'s hop and the public leg see no plaintext; bad ClientHellos are refused and the proxy keeps working', async () => {
    const config = isolatedConfig();
    const service = createHttpServer((req, res) => {
      res.setHeader('x-heard', String(req.headers['x-secret']));
      res.end(BODY);
    });
    const servicePort = await listening(service);
    const tlsPort = await freePort();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--tls-passthrough', `127.0.0.1:${tlsPort}`, '--domain', DOMAIN, '--log-level', 'warn'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const proxyPort = Number(new URL(proxyEndpoint).port);
    const hopBytes: Buffer[] = [];
    const hopRelay = await startRelay(proxyPort, { tap: (_, chunk) => (hopBytes.push(Buffer.from(chunk)), chunk) });
    const publicBytes: Buffer[] = [];
    const publicRelay = await startRelay(tlsPort, { tap: (_, chunk) => (publicBytes.push(Buffer.from(chunk)), chunk) });
    relays.push(hopRelay, publicRelay);
    // The serve's only connection to the proxy runs through the recording relay.
    const viaRelay = proxyEndpoint.replace(`:${proxyPort}/`, `:${hopRelay.port}/`);
    const serve = runCli(['serve', '--proxy', viaRelay, '--forward', String(servicePort), '--name', 'myapp', '--tls-cert', certs.cert, '--tls-key', certs.key, '--log-level', 'warn'], { config });
    const printed = await lines(serve, 3);
    expect(printed[1]).toBe(`https://myapp.${DOMAIN}:${tlsPort}/`);

    const answer = await httpsGet(publicRelay.port, `myapp.${DOMAIN}`);
    expect(answer).toMatchObject({ status: 200, authorized: true, subject: `myapp.${DOMAIN}` });
    expect(sha(answer.body)).toBe(sha(BODY));

    for (const [leg, recorded] of [['hop', hopBytes], ['public', publicBytes]] as const) {
      const wire = Buffer.concat(recorded);
      expect(wire.length, leg).toBeGreaterThan(MiB);
      expect(wire.indexOf('ridproxy-secret'), `plaintext on the ${leg} leg`).toBe(-1);
      expect(wire.indexOf('x-secret'), `plaintext on the ${leg} leg`).toBe(-1);
    }

    expect(await handshake(tlsPort, '')).toMatch(/missing extension/i);
    expect(await handshake(tlsPort, `nobody.${DOMAIN}`)).toMatch(/unrecognized name/i);
    const raw = tcpConnect({ host: '127.0.0.1', port: tlsPort });
    raw.on('error', () => undefined);
    raw.end('GET / HTTP/1.1\r\nHost: myapp.tunnel.test\r\n\r\n');
    expect((await readAll(raw).catch(() => Buffer.alloc(0))).length).toBe(0);
    // Still working, for the next client.
    expect(await httpsGet(tlsPort, `myapp.${DOMAIN}`)).toMatchObject({ status: 200, authorized: true });
    expect(proxy.child.exitCode).toBe(null);
  });

  it('without --tls-cert, serve passes the TLS bytes to a local service that terminates TLS itself', async () => {
    const config = isolatedConfig();
    const service = createHttpsServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (_, res) => res.end('terminated by the local service'));
    const servicePort = await listening(service);
    const tlsPort = await freePort();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--tls-passthrough', `127.0.0.1:${tlsPort}`, '--domain', DOMAIN, '--log-level', 'warn'], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', String(servicePort), '--name', 'myapp', '--log-level', 'warn'], { config });
    await serve.firstLine;
    const answer = await httpsGet(tlsPort, `myapp.${DOMAIN}`);
    expect(answer).toMatchObject({ status: 200, authorized: true });
    expect(answer.body.toString()).toBe('terminated by the local service');
  });
});

describe('web ingress: HTTPS terminated at the proxy (proxy start --https --tls-cert --tls-key)', () => {
  it('serves *.<domain> with a wildcard certificate, says https to the service, carries a WebSocket, survives bad handshakes and takes a renewed certificate on SIGHUP', async () => {
    const config = isolatedConfig();
    const service = createHttpServer((req, res) => {
      res.setHeader('x-proto', String(req.headers['x-forwarded-proto']));
      res.setHeader('x-forwarded', String(req.headers.forwarded));
      res.end(BODY);
    });
    const sockets = new WebSocketServer({ server: service });
    sockets.on('connection', (socket) => socket.on('message', (data, binary) => socket.send(binary ? data : `echo: ${String(data)}`)));
    const servicePort = await listening(service);
    const httpsPort = await freePort();
    // Files the test may overwrite with the renewed certificate, then signal the proxy to reread.
    const certFile = join(config, 'wildcard.pem');
    const keyFile = join(config, 'wildcard.key');
    writeFileSync(certFile, readFileSync(wildcard.cert));
    writeFileSync(keyFile, readFileSync(wildcard.key));
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--https', `127.0.0.1:${httpsPort}`, '--tls-cert', certFile, '--tls-key', keyFile, '--domain', DOMAIN], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', String(servicePort), '--name', 'myapp', '--log-level', 'warn'], { config });
    const printed = await lines(serve, 3);
    expect(printed[1]).toBe(`https://myapp.${DOMAIN}:${httpsPort}/`);

    const answer = await httpsGet(httpsPort, `myapp.${DOMAIN}`, wildcard.ca);
    expect(answer).toMatchObject({ status: 200, authorized: true, subject: `*.${DOMAIN}` });
    expect(sha(answer.body)).toBe(sha(BODY));
    // The RID-derived name is under the same wildcard.
    const ridName = new URL(printed[2]!).hostname;
    expect(await httpsGet(httpsPort, ridName, wildcard.ca)).toMatchObject({ status: 200, authorized: true });

    const headers = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: httpsPort, servername: `myapp.${DOMAIN}`, headers: { host: `myapp.${DOMAIN}`, 'x-forwarded-proto': 'gopher' }, ca: wildcard.ca, agent: false }, (res) => {
        res.resume();
        resolve(res.headers);
      });
      req.on('error', reject);
      req.end();
    });
    expect(headers['x-proto']).toBe('https');
    expect(headers['x-forwarded']).toMatch(/^for=127\.0\.0\.1;host="myapp\.tunnel\.test";proto=https$/);

    const client = new WebSocket(`wss://myapp.${DOMAIN}:${httpsPort}/`, { lookup: loopbackLookup as never, ca: wildcard.ca, perMessageDeflate: false });
    client.on('error', () => undefined);
    const replies: string[] = [];
    client.on('message', (data) => replies.push(String(data)));
    await new Promise((resolve, reject) => {
      client.once('open', resolve);
      client.once('error', reject);
    });
    for (let i = 0; i < 100; i++) client.send(`message ${i}`);
    await waitFor(() => replies.length === 100, '100 WebSocket echoes', 20_000);
    expect(replies).toEqual(Array.from({ length: 100 }, (_, i) => `echo: message ${i}`));
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));
    client.close(4003, 'done');
    expect(await closed).toBe(4003);

    // A client that distrusts the certificate, and bytes that are not TLS, fail alone.
    expect(await handshake(httpsPort, `myapp.${DOMAIN}`)).toMatch(/certificate/i);
    const raw = tcpConnect({ host: '127.0.0.1', port: httpsPort });
    raw.on('error', () => undefined);
    raw.end('GET / HTTP/1.1\r\nHost: myapp.tunnel.test\r\n\r\n');
    await readAll(raw).catch(() => Buffer.alloc(0));
    expect(await httpsGet(httpsPort, `myapp.${DOMAIN}`, wildcard.ca)).toMatchObject({ status: 200, authorized: true });

    // Renewal: new files, SIGHUP, and new connections get the new certificate.
    writeFileSync(certFile, readFileSync(renewed.cert));
    writeFileSync(keyFile, readFileSync(renewed.key));
    proxy.child.kill('SIGHUP');
    await waitFor(() => proxy.stderr().includes('reloaded the --https certificate'), 'the certificate reload logged', 10_000);
    expect(await handshake(httpsPort, `myapp.${DOMAIN}`, renewed.ca)).toBe('connected');
    expect(await handshake(httpsPort, `myapp.${DOMAIN}`, wildcard.ca)).toMatch(/certificate/i);
    expect(proxy.child.exitCode).toBe(null);
    sockets.close();
  });

  it('refuses --https without a certificate, and a certificate without --https, with the reason', async () => {
    const config = isolatedConfig();
    const noCert = await runToExit(['start', '--listen', '127.0.0.1:0', '--https', '127.0.0.1:0', '--domain', DOMAIN], config);
    expect(noCert.code).toBe(1);
    expect(noCert.stderr).toContain('--https needs --tls-cert and --tls-key');
    const noHttps = await runToExit(['start', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--domain', DOMAIN, '--tls-cert', wildcard.cert, '--tls-key', wildcard.key], config);
    expect(noHttps.code).toBe(1);
    expect(noHttps.stderr).toContain('--tls-cert and --tls-key are for --https');
    const badKey = await runToExit(['start', '--listen', '127.0.0.1:0', '--https', '127.0.0.1:0', '--domain', DOMAIN, '--tls-cert', wildcard.cert, '--tls-key', renewed.key], config);
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toContain('cannot use the TLS certificate');
  });
});

/** A PROXY protocol header read the way haproxy's proxy-protocol.txt describes it (not with the encoder under test). */
function parseProxyHeader(data: Buffer): { header: { version: 1 | 2; source: string; destination: string }; rest: Buffer } | undefined {
  const signature = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
  if (data.length >= 16 && data.subarray(0, 12).equals(signature)) {
    const length = data.readUInt16BE(14);
    if (data.length < 16 + length) return undefined;
    expect(data[12]).toBe(0x21); // version 2, PROXY
    expect(data[13]).toBe(0x11); // TCP over IPv4
    expect(length).toBe(12);
    const ip = (at: number): string => [...data.subarray(at, at + 4)].join('.');
    return { header: { version: 2, source: `${ip(16)}:${data.readUInt16BE(24)}`, destination: `${ip(20)}:${data.readUInt16BE(26)}` }, rest: data.subarray(16 + length) };
  }
  const end = data.indexOf('\r\n');
  if (end < 0) return undefined;
  const [proxy, family, src, dst, sport, dport] = data.subarray(0, end).toString('latin1').split(' ');
  expect([proxy, family]).toEqual(['PROXY', 'TCP4']);
  return { header: { version: 1, source: `${src}:${sport}`, destination: `${dst}:${dport}` }, rest: data.subarray(end + 2) };
}

/** A service that reads a PROXY header first (when `expectHeader`), answers with what it learned as one JSON line, then echoes. */
async function addressReporter(expectHeader: boolean): Promise<number> {
  const server = createServer((socket: Socket) => {
    socket.on('error', () => undefined);
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = expectHeader ? parseProxyHeader(buffered) : { header: null, rest: buffered };
      if (parsed === undefined) return;
      socket.off('data', onData);
      socket.write(`${JSON.stringify({ header: parsed.header, peer: `${socket.remoteAddress}:${socket.remotePort}` })}\n`);
      socket.write(parsed.rest);
      socket.pipe(socket);
    };
    socket.on('data', onData);
  });
  return listening(server);
}

/** Connects to a public port, sends a line, and reads the service's report and the echo. */
async function throughPublicPort(port: number): Promise<{ report: { header: { version: number; source: string; destination: string } | null }; echoed: string; localPort: number }> {
  const socket = tcpConnect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const localPort = socket.localPort!;
  socket.end('ping over a public port\n');
  const text = (await readAll(socket)).toString();
  const [report, echoed] = text.split('\n');
  return { report: JSON.parse(report!) as never, echoed: echoed!, localPort };
}

describe('web ingress: public TCP ports (proxy start --tcp-ports, serve --public-port)', () => {
  it('a raw TCP client reaches the service; with --proxy-protocol v2 and v1 the local service reads the client\'s real address', async () => {
    const config = isolatedConfig();
    const base = await freePortRange(3);
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--tcp-ports', `127.0.0.1:${base}-${base + 2}`, '--log-level', 'warn'], { config });
    const endpoint = await proxy.firstLine;
    const plainPort = await addressReporter(false);
    const v1Port = await addressReporter(true);
    const v2Port = await addressReporter(true);
    const publicPort = async (service: number, extra: string[]): Promise<number> => {
      const serve = runCli(['serve', '--proxy', endpoint, '--forward', String(service), '--public-port', '0', ...extra, '--log-level', 'warn'], { config });
      const [, address] = await lines(serve, 2);
      expect(address).toMatch(new RegExp(`^tcp://127\\.0\\.0\\.1:(${base}|${base + 1}|${base + 2})$`));
      return Number(new URL(address!).port);
    };
    const plain = await throughPublicPort(await publicPort(plainPort, []));
    expect(plain.report.header).toBe(null);
    expect(plain.echoed).toBe('ping over a public port');

    for (const [version, service] of [['v2', v2Port], ['v1', v1Port]] as const) {
      const reached = await throughPublicPort(await publicPort(service, ['--proxy-protocol', version]));
      expect(reached.report.header, version).toEqual({ version: Number(version[1]), source: `127.0.0.1:${reached.localPort}`, destination: `127.0.0.1:${service}` });
      expect(reached.echoed).toBe('ping over a public port');
    }
  });

  it('ports outside the range, over the per-key cap, or on a proxy without public ports are refused: serve exits 1 and says why', async () => {
    const config = isolatedConfig();
    const base = await freePortRange(2);
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--tcp-ports', `127.0.0.1:${base}-${base + 1}`, '--log-level', 'warn'], { config });
    const endpoint = await proxy.firstLine;
    const outside = await runToExit(['serve', '--proxy', endpoint, '--forward', '1', '--public-port', String(base + 2)], config);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toContain(`refused the registration: public port ${base + 2} is outside the range this proxy allows (${base}-${base + 1})`);
    const overCap = await runToExit(['serve', '--proxy', endpoint, '--forward', '1', '--public-port', '0', '--public-port', '0'], config);
    expect(overCap.code).toBe(1);
    expect(overCap.stderr).toContain('refused the registration: asked for 2 public ports; this proxy allows 1 per key (proxy start --max-ports-per-key)');

    const bare = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config: isolatedConfig() });
    const none = await runToExit(['serve', '--proxy', await bare.firstLine, '--forward', '1', '--public-port', '0'], config);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('offers no public TCP ports (it needs `proxy start --tcp-ports`)');
  });
});

/** The `$ ` lines of the README section under `heading`, in order. */
function sectionCommands(heading: string): string[] {
  const text = readme();
  const start = text.indexOf(heading);
  if (start < 0) throw new Error(`README.md has no section ${heading}`);
  const section = text.slice(start, text.indexOf('\n## ', start + 1));
  return [...section.matchAll(/^```console\n([\s\S]*?)^```$/gm)].flatMap((block) =>
    block[1]!
      .split('\n')
      .filter((line) => line.startsWith('$ '))
      .map((line) => line.slice(2)),
  );
}

describe('README: HTTPS by SNI and public TCP ports', () => {
  it('runs the section\'s commands as written, with local addresses, a test CA, and DNS replaced by --connect-to', async () => {
    const config = isolatedConfig();
    // The README's names, under a CA of this test's own.
    const readmeCerts = makeCertificates(['myapp.tunnel.example.com']);
    const service = createHttpServer((_, res) => res.end('hello from behind NAT\n'));
    const servicePort = await listening(service);
    const [proxyPort, tlsPort, base] = await Promise.all([freePort(), freePort(), freePortRange(2)]);
    const curl = promisify(execFile);
    let proxyEndpoint = '';
    let tcpAddress = '';
    const handlers: Array<[RegExp, (line: string) => Promise<void>]> = [
      [
        /^npx proxy start --listen 0\.0\.0\.0:8100 --domain tunnel\.example\.com --tls-passthrough 0\.0\.0\.0:8443 --tcp-ports 20000-20999$/,
        async (line) => {
          const args = line
            .replace('0.0.0.0:8100', `127.0.0.1:${proxyPort}`)
            .replace('0.0.0.0:8443', `127.0.0.1:${tlsPort}`)
            .replace('20000-20999', `127.0.0.1:${base}-${base + 1}`)
            .split(' ')
            .slice(2);
          proxyEndpoint = await runCli([...args, '--log-level', 'warn'], { config }).firstLine;
        },
      ],
      [
        /^npx proxy serve --proxy \S+ --forward 3000 --name myapp --tls-cert myapp\.pem --tls-key myapp-key\.pem --public-port 0$/,
        async (line) => {
          const args = line
            .replace(/--proxy \S+/, `--proxy ${proxyEndpoint}`)
            .replace('--forward 3000', `--forward ${servicePort}`)
            .replace('myapp.pem', readmeCerts.cert)
            .replace('myapp-key.pem', readmeCerts.key)
            .split(' ')
            .slice(2);
          const printed = await lines(runCli([...args, '--log-level', 'warn'], { config }), 4);
          expect(printed[1]).toBe(`https://myapp.tunnel.example.com:${tlsPort}/`);
          expect(printed[2]).toMatch(new RegExp(`^https://[a-z2-7]{26}\\.tunnel\\.example\\.com:${tlsPort}/$`));
          expect(printed[3]).toBe(`tcp://127.0.0.1:${base}`);
          tcpAddress = printed[3]!.slice('tcp://'.length);
        },
      ],
      [
        /^curl https:\/\/myapp\.tunnel\.example\.com:8443\/$/,
        async () => {
          const { stdout } = await curl('curl', ['-s', '--cacert', join(readmeCerts.dir, 'ca.pem'), '--connect-to', `::127.0.0.1:${tlsPort}`, `https://myapp.tunnel.example.com:${tlsPort}/`]);
          expect(stdout).toBe('hello from behind NAT\n');
        },
      ],
      [
        /^curl http:\/\/203\.0\.113\.7:20000\/$/,
        async () => {
          const { stdout } = await curl('curl', ['-s', `http://${tcpAddress}/`]);
          expect(stdout).toBe('hello from behind NAT\n');
        },
      ],
    ];
    const commands = sectionCommands('## HTTPS by SNI and public TCP ports');
    expect(commands.length).toBe(handlers.length);
    for (const line of commands) {
      const handler = handlers.find(([pattern]) => pattern.test(line));
      expect(handler, `no test for the README line: $ ${line}`).toBeDefined();
      await handler![1](line);
    }
    rmSync(readmeCerts.dir, { recursive: true, force: true });
  });
});
