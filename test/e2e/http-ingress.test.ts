import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { Agent, createServer, request, type IncomingHttpHeaders, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestStream, waitFor, writeRandom } from '../helpers.js';
import { freePort, isolatedConfig, killAll, runCli, runToExit, type CliProcess } from './cli.js';

const DOMAIN = 'tunnel.test';
const MiB = 1 << 20;
const servers: Server[] = [];

/**
 * A local service: answers with its name, the path and the headers it got; /upload hashes the
 * body; /download/<n> streams n pseudo-random bytes; counts what it wrote for /slow.
 */
async function service(name: string): Promise<{ port: number; slowWritten: () => number; close: () => Promise<void> }> {
  let slowWritten = 0;
  const server = createServer((req, res) => {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const url = req.url ?? '/';
    if (url === '/upload') {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      req.on('end', () => res.end(JSON.stringify({ sha256: hash.digest('hex'), bytes })));
    } else if (url.startsWith('/download/')) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-sha-follows': 'trailer' });
      void writeRandom(res, Number(url.slice('/download/'.length)));
    } else if (url === '/slow') {
      res.writeHead(200);
      const block = Buffer.alloc(64 * 1024, 7);
      const pump = (): void => {
        while (slowWritten < 1024 * MiB) {
          slowWritten += block.length;
          if (!res.write(block)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'x-service': name });
      res.end(JSON.stringify({ service: name, path: url, headers: req.headers }));
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, slowWritten: () => slowWritten, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function get(port: number, host: string, path: string, options: { agent?: Agent; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: options.agent ?? false, headers: { host, ...options.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The proxy's resident memory, from /proc: what a stalled client must not grow. */
function rssOf(cli: CliProcess): number {
  const status = readFileSync(`/proc/${cli.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

describe('proxy start --http: the web ingress', () => {
  const config = isolatedConfig();
  const namesFile = join(config, 'names.json');
  let httpPort: number;
  let proxy: CliProcess;
  let proxyEndpoint: string;
  let alpha: Awaited<ReturnType<typeof service>>;
  let beta: Awaited<ReturnType<typeof service>>;
  let alphaServe: CliProcess;
  let betaServe: CliProcess;
  let betaIdentity: string;
  let proxyPort: number;

  const startProxy = async (): Promise<void> => {
    proxy = runCli(['start', '--listen', `127.0.0.1:${proxyPort}`, '--http', `127.0.0.1:${httpPort}`, '--domain', DOMAIN, '--names-file', namesFile], { config });
    proxyEndpoint = await proxy.firstLine;
  };
  const serve = (port: number, name: string, identity: string): CliProcess =>
    runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(port), '--name', name, '--identity', identity], { config });

  beforeAll(async () => {
    [httpPort, proxyPort] = await Promise.all([freePort(), freePort()]);
    [alpha, beta] = await Promise.all([service('alpha'), service('beta')]);
    await startProxy();
    const alphaIdentity = join(config, 'alpha.pem');
    betaIdentity = join(config, 'beta.pem');
    for (const file of [alphaIdentity, betaIdentity]) expect((await runToExit(['keygen', '--out', file], config)).code).toBe(0);
    alphaServe = serve(alpha.port, 'alpha', alphaIdentity);
    betaServe = serve(beta.port, 'beta', betaIdentity);
    await Promise.all([alphaServe.firstLine, betaServe.firstLine]);
    await waitFor(() => alphaServe.stdout().split('\n').length >= 4, 'serve to print its URLs');
  }, 30_000);

  afterAll(async () => {
    await killAll();
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  });

  it('serve prints the URLs a browser uses: its name and its routing id name, under the domain', () => {
    const [endpoint, named, byRid] = alphaServe.stdout().trim().split('\n');
    expect(endpoint).toMatch(/^ridp:\/\//);
    expect(named).toBe(`http://alpha.${DOMAIN}:${httpPort}/`);
    expect(byRid).toMatch(new RegExp(`^http://[a-z2-7]{26}\\.tunnel\\.test:${httpPort}/$`));
  });

  it('routes 200 concurrent requests to two services by Host, each to its own, over keep-alive connections', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 20 });
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const name = i % 2 === 0 ? 'alpha' : 'beta';
        return get(httpPort, `${name}.${DOMAIN}:${httpPort}`, `/req/${i}`, { agent }).then((answer) => ({ name, i, answer }));
      }),
    );
    agent.destroy();
    for (const { name, i, answer } of answers) {
      expect(answer.status).toBe(200);
      const body = JSON.parse(answer.body.toString()) as { service: string; path: string };
      expect(body).toMatchObject({ service: name, path: `/req/${i}` });
      expect(answer.headers['x-service']).toBe(name);
    }
    // The routing id name reaches the same service as the chosen one.
    const byRid = new URL(alphaServe.stdout().trim().split('\n')[2]!).hostname;
    expect(JSON.parse((await get(httpPort, byRid, '/')).body.toString())).toMatchObject({ service: 'alpha' });
  });

  it('sets the forwarding headers itself, replacing what a client claims', async () => {
    const answer = await get(httpPort, `alpha.${DOMAIN}`, '/', { headers: { 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6' } });
    const { headers } = JSON.parse(answer.body.toString()) as { headers: Record<string, string> };
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-host']).toBe(`alpha.${DOMAIN}`);
    expect(headers.forwarded).toBe(`for=127.0.0.1;host="alpha.${DOMAIN}";proto=http`);
    expect(headers.host).toBe(`alpha.${DOMAIN}`);
  });

  it('carries a 100 MiB upload and a 100 MiB download intact', async () => {
    const upload = await new Promise<{ sha256: string; bytes: number; sent: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: httpPort, method: 'POST', path: '/upload', agent: false, headers: { host: `beta.${DOMAIN}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => void sent.then((digest) => resolve({ ...(JSON.parse(Buffer.concat(chunks).toString()) as { sha256: string; bytes: number }), sent: digest })));
      });
      req.on('error', reject);
      const sent = writeRandom(req, 100 * MiB);
    });
    expect(upload.bytes).toBe(100 * MiB);
    expect(upload.sha256).toBe(upload.sent);

    const expected = await writeRandom(new PassThrough().resume(), 100 * MiB);
    const download = await new Promise<{ sha256: string; bytes: number }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: httpPort, path: `/download/${100 * MiB}`, agent: false, headers: { host: `alpha.${DOMAIN}` } }, (res) => {
        void digestStream(res).then(resolve, reject);
      });
      req.on('error', reject);
      req.end();
    });
    expect(download).toEqual({ sha256: expected, bytes: 100 * MiB });
  }, 60_000);

  it('a client that stops reading holds the service back instead of growing the proxy', async () => {
    const before = rssOf(proxy);
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: httpPort, path: '/slow', agent: false, headers: { host: `alpha.${DOMAIN}` } }, resolve);
      req.on('error', reject);
      req.end();
    });
    response.pause();
    // Let the pipe fill up to where every window and buffer on the way is full.
    let written = 0;
    await waitFor(
      async () => {
        const now = alpha.slowWritten();
        const settled = now === written && now > 0;
        written = now;
        await new Promise((resolve) => setTimeout(resolve, 300));
        return settled;
      },
      'the service to be held back',
      20_000,
    );
    const grown = rssOf(proxy) - before;
    console.log(`stalled client: the service wrote ${(written / MiB).toFixed(1)} MiB of 1024 and stopped; the proxy grew by ${(grown / MiB).toFixed(1)} MiB`);
    expect(written).toBeLessThan(256 * MiB);
    expect(grown).toBeLessThan(64 * MiB);
    response.destroy();
  }, 40_000);

  it('serve --json prints events instead of lines: registered with its URLs, reconnecting, registered again, stopped', async () => {
    const other = join(config, 'json.pem');
    expect((await runToExit(['keygen', '--out', other], config)).code).toBe(0);
    const json = runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(beta.port), '--identity', other, '--json'], { config });
    const events = (): Array<Record<string, unknown>> => json.stdout().trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    await json.firstLine;
    expect(events()[0]).toMatchObject({ event: 'registered', endpoint: expect.stringMatching(/^ridp:\/\//), urls: [expect.stringMatching(new RegExp(`^http://[a-z2-7]{26}\\.tunnel\\.test:${httpPort}/$`))] });
    // The proxy restarts: serve says it is reconnecting, then registered again.
    proxy.child.kill('SIGKILL');
    await proxy.exited;
    await waitFor(() => events().some((e) => e.event === 'reconnecting'), 'a reconnecting event', 10_000);
    await startProxy();
    await waitFor(() => events().filter((e) => e.event === 'registered').length === 2, 'a second registered event', 10_000);
    json.child.kill('SIGTERM');
    await json.exited;
    expect(events().map((e) => e.event)).toEqual(['registered', 'reconnecting', 'registered', 'stopped']);
    expect(events()[1]).toMatchObject({ code: expect.stringMatching(/^ERR_/) });
    // alpha and beta are back too, by themselves.
    await waitFor(async () => (await get(httpPort, `alpha.${DOMAIN}`, '/')).status === 200 && (await get(httpPort, `beta.${DOMAIN}`, '/')).status === 200, 'alpha and beta to be back', 10_000);
  }, 30_000);

  it('answers 404 naming an unknown host, and 400 without a Host', async () => {
    const unknown = await get(httpPort, `nobody.${DOMAIN}`, '/');
    expect(unknown.status).toBe(404);
    expect(unknown.body.toString()).toContain(`no service is registered as nobody.${DOMAIN}`);
    const elsewhere = await get(httpPort, 'example.com', '/');
    expect(elsewhere.status).toBe(404);
    expect(elsewhere.body.toString()).toContain(`this proxy serves *.${DOMAIN}`);
    const huge = await get(httpPort, `alpha.${DOMAIN}`, '/', { headers: { 'x-big': 'x'.repeat(20_000) } });
    expect(huge.status).toBe(431);
  });

  it('answers 502 with the reason when the local service is down, and when the server is offline; the server gets its name back on reconnect', async () => {
    await beta.close();
    const down = await get(httpPort, `beta.${DOMAIN}`, '/');
    expect(down.status).toBe(502);
    expect(down.body.toString()).toContain('could not reach its local service');
    beta = await service('beta');

    betaServe.child.kill('SIGTERM');
    await betaServe.exited;
    await waitFor(async () => (await get(httpPort, `beta.${DOMAIN}`, '/')).status === 502, 'the ingress to see beta offline');
    const offline = await get(httpPort, `beta.${DOMAIN}`, '/');
    expect(offline.body.toString()).toContain(`beta.${DOMAIN} is not connected to the proxy`);

    betaServe = serve(beta.port, 'beta', betaIdentity);
    await betaServe.firstLine;
    expect(JSON.parse((await get(httpPort, `beta.${DOMAIN}`, '/')).body.toString())).toMatchObject({ service: 'beta' });
  });

  it('refuses the name to another key, before and after a proxy restart', async () => {
    const other = join(config, 'other.pem');
    expect((await runToExit(['keygen', '--out', other], config)).code).toBe(0);
    const taken = await runToExit(['serve', '--proxy', proxyEndpoint, '--forward', String(beta.port), '--name', 'alpha', '--identity', other], config);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain(`the name alpha.${DOMAIN} is reserved for another key`);
    expect(JSON.parse(readFileSync(namesFile, 'utf8')).names).toHaveProperty('alpha');

    proxy.child.kill('SIGTERM');
    await proxy.exited;
    await startProxy();
    const again = await runToExit(['serve', '--proxy', proxyEndpoint, '--forward', String(beta.port), '--name', 'alpha', '--identity', other], config);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('reserved for another key');
    // The holder, back by itself after the restart, still has it.
    await waitFor(async () => (await get(httpPort, `alpha.${DOMAIN}`, '/')).status === 200, 'alpha to be back', 10_000);

    // The operator lists and releases it; after SIGHUP the other key may take it.
    const listed = await runToExit(['names', 'list', '--names-file', namesFile], config);
    expect(listed.stdout).toMatch(/^alpha {2}[0-9a-f]{32} {2}\d{4}-/m);
    expect(listed.stdout).toMatch(/^beta {2}/m);
    expect((await runToExit(['names', 'release', 'nosuch', '--names-file', namesFile], config)).stderr).toContain('the name nosuch is not reserved');
    expect((await runToExit(['names', 'release', 'alpha', '--names-file', namesFile], config)).code).toBe(0);
    proxy.child.kill('SIGHUP');
    await waitFor(() => proxy.stderr().includes('reloaded the allow-list and tokens'), 'the proxy to read the names again');
    const taker = runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(beta.port), '--name', 'alpha', '--identity', other], { config });
    await taker.firstLine;
    expect(JSON.parse(readFileSync(namesFile, 'utf8')).names.alpha.routingId).toBe((await taker.firstLine).slice(-32));
  }, 40_000);
});
