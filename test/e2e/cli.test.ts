import { randomBytes } from 'node:crypto';
import { get, createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { delay, digestStream, sha256, waitFor } from '../helpers.js';
import { isolatedConfig, killAll, runCli, runToExit } from './cli.js';

const MiB = 1 << 20;
const DOWNLOAD = randomBytes(100 * MiB);
const DOWNLOAD_SHA = sha256(DOWNLOAD);

const servers: Array<HttpServer | Server> = [];

afterEach(async () => {
  await killAll();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function listening<T extends HttpServer | Server>(server: T): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A local HTTP service: /id/N answers with N, /download with 100 MiB of known bytes. */
function httpService(): HttpServer {
  return createHttpServer((request, response) => {
    if (request.url === '/download') {
      response.writeHead(200, { 'content-length': DOWNLOAD.length });
      response.end(DOWNLOAD);
      return;
    }
    response.end(`answer to ${request.url}`);
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** proxy start + proxy serve --forward <port>; returns the endpoints they printed. */
async function startChain(config: string, forwardPort: number, proxyPort = 0): Promise<{ proxyEndpoint: string; serverEndpoint: string }> {
  const proxy = runCli(['start', '--listen', `127.0.0.1:${proxyPort}`, '--log-level', 'warn'], { config });
  const proxyEndpoint = await proxy.firstLine;
  const serve = runCli(['serve', '--proxy', proxyEndpoint, '--forward', `127.0.0.1:${forwardPort}`], { config });
  const serverEndpoint = await serve.firstLine;
  return { proxyEndpoint, serverEndpoint };
}

describe('CLI end to end', () => {
  it('carries 100 concurrent HTTP requests and a 100 MiB download through start, serve and connect', async () => {
    const config = isolatedConfig();
    const httpPort = await listening(httpService());
    const { proxyEndpoint, serverEndpoint } = await startChain(config, httpPort);
    expect(proxyEndpoint).toMatch(/^ridp:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{32}$/);
    // The server's endpoint pins the proxy too: clients check its key before they send anything.
    expect(serverEndpoint).toBe(`ridp://${proxyEndpoint.slice(-32)}@${proxyEndpoint.slice('ridp://'.length, -33)}/${serverEndpoint.slice(-32)}`);
    const connectCli = runCli(['connect', serverEndpoint, '--local', '0'], { config });
    const local = await connectCli.firstLine;
    const localPort = Number(local.split(':').pop());

    const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => httpGet(localPort, `/id/${i}`)));
    responses.forEach((response, i) => {
      expect(response.status).toBe(200);
      expect(response.body.toString()).toBe(`answer to /id/${i}`);
    });

    const download = await httpGet(localPort, '/download');
    expect(download.body.length).toBe(DOWNLOAD.length);
    expect(sha256(download.body)).toBe(DOWNLOAD_SHA);
  });

  it('carries a 10 MiB binary round trip over connect --stdio', async () => {
    const config = isolatedConfig();
    const echoPort = await listening(createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket)));
    const { serverEndpoint } = await startChain(config, echoPort);
    const stdio = runCli(['connect', serverEndpoint, '--stdio', '--log-level', 'warn'], { config });
    const payload = randomBytes(10 * MiB);
    const received = digestStream(stdio.child.stdout!);
    stdio.child.stdin!.end(payload);
    const result = await received;
    expect(result.bytes).toBe(payload.length);
    expect(result.sha256).toBe(sha256(payload));
    expect((await stdio.exited).code).toBe(0);
  });

  it('serve re-registers by itself within 2 s after the proxy is killed and restarted; connect reports errors meanwhile and keeps listening', async () => {
    const config = isolatedConfig();
    const httpPort = await listening(httpService());
    const proxyPort = await freePort();
    const proxy = runCli(['start', '--listen', `127.0.0.1:${proxyPort}`], { config });
    const proxyEndpoint = await proxy.firstLine;
    const serve = runCli(['serve', '--proxy', proxyEndpoint, '--forward', `127.0.0.1:${httpPort}`], { config });
    const serverEndpoint = await serve.firstLine;
    const connectCli = runCli(['connect', serverEndpoint, '--local', '0'], { config });
    const localPort = Number((await connectCli.firstLine).split(':').pop());
    expect((await httpGet(localPort, '/before')).body.toString()).toBe('answer to /before');

    proxy.child.kill('SIGKILL');
    await proxy.exited;
    // While the proxy is down: each local connection fails with a clear logged error, and connect keeps listening.
    await expect(httpGet(localPort, '/down')).rejects.toThrow();
    await waitFor(() => connectCli.stderr().includes('cannot reach'), 'connect to log the failure');
    expect(connectCli.stderr()).toMatch(/cannot reach ridp:\/\/[0-9a-f]{32}@127\.0\.0\.1:\d+\/[0-9a-f]{32}: .*(refused|closed|lost)/);
    await expect(httpGet(localPort, '/down-again')).rejects.toThrow();

    const restarted = runCli(['start', '--listen', `127.0.0.1:${proxyPort}`], { config });
    expect(await restarted.firstLine).toBe(proxyEndpoint);
    const restartedAt = Date.now();
    await waitFor(() => /re-registered/.test(serve.stderr()), 'serve to re-register', 2000);
    expect(Date.now() - restartedAt).toBeLessThan(2000);
    expect((await httpGet(localPort, '/after')).body.toString()).toBe('answer to /after');
    const fresh = runCli(['connect', serverEndpoint, '--local', '0'], { config });
    const freshPort = Number((await fresh.firstLine).split(':').pop());
    expect((await httpGet(freshPort, '/fresh')).body.toString()).toBe('answer to /fresh');
  });

  it('exits 0 within the drain timeout on SIGTERM during a transfer, and the client sees an end or a clear error', async () => {
    const config = isolatedConfig();
    // A service that trickles bytes forever, so a transfer is always in progress.
    const tricklePort = await listening(
      createServer((socket) => {
        const timer = setInterval(() => socket.write(randomBytes(1024)), 5);
        socket.on('close', () => clearInterval(timer));
        socket.on('error', () => clearInterval(timer));
      }),
    );
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--drain-timeout', '1000'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const serve = runCli(['serve', '--proxy', proxyEndpoint, '--forward', `127.0.0.1:${tricklePort}`], { config });
    const connectCli = runCli(['connect', await serve.firstLine, '--local', '0'], { config });
    const localPort = Number((await connectCli.firstLine).split(':').pop());
    const client = connect({ host: '127.0.0.1', port: localPort });
    let received = 0;
    client.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    const outcome = new Promise<string>((resolve) => {
      client.on('end', () => resolve('end'));
      client.on('error', (err) => resolve(`error: ${err.message}`));
      client.on('close', () => resolve('closed'));
    });
    await waitFor(() => received > 10_000, 'the transfer to be under way');

    const signalledAt = Date.now();
    proxy.child.kill('SIGTERM');
    const { code } = await proxy.exited;
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(1000 + 1500);
    const result = await Promise.race([outcome, delay(3000).then(() => 'hang')]);
    expect(result).not.toBe('hang');
    expect(proxy.stderr()).toContain('going away');
  });

  it('closes a flow the local service refuses with a clear reason, logs it, and keeps serving', async () => {
    const config = isolatedConfig();
    const servicePort = await freePort();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', `127.0.0.1:${servicePort}`], { config });
    const serverEndpoint = await serve.firstLine;
    for (let attempt = 0; attempt < 2; attempt++) {
      const refused = await runToExit(['connect', serverEndpoint, '--stdio'], config);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(`proxy: the server could not reach its local service at 127.0.0.1:${servicePort}: connection refused`);
    }
    await waitFor(() => (serve.stderr().match(/local service refused a flow/g) ?? []).length === 2, 'serve to log both refusals');
    expect(serve.child.exitCode).toBeNull();

    const echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
    servers.push(echo);
    await new Promise<void>((resolve) => echo.listen(servicePort, '127.0.0.1', resolve));
    const stdio = runCli(['connect', serverEndpoint, '--stdio'], { config });
    const reply = digestStream(stdio.child.stdout!);
    stdio.child.stdin!.end('now it answers');
    expect((await reply).bytes).toBe('now it answers'.length);
  });

  /** The lines a person reads: log records (JSON) set aside, exactly one line must remain. */
  function errorLine(stderr: string): string {
    const lines = stderr.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('{'));
    expect(lines).toHaveLength(1);
    expect(stderr).not.toMatch(/^\s+at /m);
    return lines[0];
  }

  describe('bad input gives one clear line and a non-zero exit', () => {
    it('rejects an unparseable endpoint', async () => {
      const result = await runToExit(['connect', 'ridp://127.0.0.1:99999/abc', '--local', '0'], isolatedConfig());
      expect(result.code).not.toBe(0);
      expect(errorLine(result.stderr)).toMatch(/^proxy: invalid endpoint "ridp:\/\/127\.0\.0\.1:99999\/abc": port 99999/);
    });

    it('rejects a missing identity file', async () => {
      const result = await runToExit(['serve', '--proxy', '127.0.0.1:1', '--forward', '127.0.0.1:2', '--identity', '/nonexistent/id.pem'], isolatedConfig());
      expect(result.code).not.toBe(0);
      expect(errorLine(result.stderr)).toBe('proxy: identity file /nonexistent/id.pem: no such file');
    });

    it('rejects an occupied port', async () => {
      const port = await listening(createServer());
      const result = await runToExit(['start', '--listen', `127.0.0.1:${port}`], isolatedConfig());
      expect(result.code).not.toBe(0);
      expect(errorLine(result.stderr)).toBe(`proxy: cannot listen on 127.0.0.1:${port}: the address is already in use`);
    });

    it('refuses a proxy given as a bare host:port, whose key it cannot check, unless told to', async () => {
      const result = await runToExit(['serve', '--proxy', '127.0.0.1:1', '--forward', '127.0.0.1:2'], isolatedConfig());
      expect(result.code).not.toBe(0);
      expect(errorLine(result.stderr)).toMatch(/^proxy: endpoint ridp:\/\/127\.0\.0\.1:1 names no routing id, so the identity of the process at 127\.0\.0\.1:1 cannot be checked/);
    });

    it('rejects an unreachable proxy', async () => {
      const port = await freePort();
      const result = await runToExit(['serve', '--proxy', `127.0.0.1:${port}`, '--insecure-any-proxy', '--forward', '127.0.0.1:2'], isolatedConfig());
      expect(result.code).not.toBe(0);
      expect(errorLine(result.stderr)).toBe(`proxy: cannot reach 127.0.0.1:${port}: connection refused`);
    });
  });

  it('keygen writes a 0600 identity and refuses to overwrite it', async () => {
    const config = isolatedConfig();
    const out = `${config}/id.pem`;
    const first = await runToExit(['keygen', '--out', out], config);
    expect(first.code).toBe(0);
    expect(first.stdout.trim()).toMatch(/^[0-9a-f]{32}$/);
    const { statSync } = await import('node:fs');
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const second = await runToExit(['keygen', '--out', out], config);
    expect(second.code).not.toBe(0);
    expect(second.stderr.trim()).toBe(`proxy: identity file ${out} already exists; use --force to replace it`);
  });

  it('status lists the registered servers', async () => {
    const config = isolatedConfig();
    const echoPort = await listening(createServer((socket) => socket.pipe(socket)));
    const { proxyEndpoint, serverEndpoint } = await startChain(config, echoPort);
    const rid = serverEndpoint.split('/').pop()!;
    const table = await runToExit(['status', proxyEndpoint], config);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(rid);
    const json = await runToExit(['status', proxyEndpoint, '--json'], config);
    const report = JSON.parse(json.stdout) as { servers: Array<{ routingId: string }> };
    expect(report.servers.map((s) => s.routingId)).toEqual([rid]);
  });
});
