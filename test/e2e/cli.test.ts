import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { get, createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { delay, digestStream, sha256, waitFor } from '../helpers.js';
import { LAUNCHER, freePort, isolatedConfig, killAll, runCli, runToExit } from './cli.js';

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

  it('connect --stdio closes its stdout when the service hangs up, while its stdin is still open (as a ProxyCommand needs)', async () => {
    const config = isolatedConfig();
    const byePort = await listening(createServer((socket) => socket.end('bye')));
    const { serverEndpoint } = await startChain(config, byePort);
    const stdio = runCli(['connect', serverEndpoint, '--stdio', '--log-level', 'warn'], { config });
    const received = digestStream(stdio.child.stdout!);
    // stdin stays open: only the remote's end can end stdout.
    expect((await received).bytes).toBe(3);
    expect(stdio.child.exitCode).toBeNull();
    stdio.child.stdin!.end();
    expect((await stdio.exited).code).toBe(0);

    // The same on a pipe, as ssh gives a ProxyCommand (the runner's pipes are sockets, which end otherwise): cat sees EOF while connect still runs.
    const piped = spawn('bash', ['-c', `${LAUNCHER} connect ${serverEndpoint} --stdio --log-level warn | { cat; echo ' <eof>'; }`], {
      env: { ...process.env, XDG_CONFIG_HOME: config },
    });
    let output = '';
    piped.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitFor(() => output === 'bye <eof>\n', 'EOF through the pipe', 10_000);
    expect(piped.exitCode).toBeNull();
    piped.stdin.end();
    expect(await new Promise((resolve) => piped.once('exit', resolve))).toBe(0);
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

    it('rejects a bad limit before it listens', async () => {
      const result = await runToExit(['start', '--listen', '127.0.0.1:0', '--ipv6-prefix', '200'], isolatedConfig());
      expect(result.code).not.toBe(0);
      expect(errorLine(result.stderr)).toBe('proxy: ipv6PrefixLength must be an integer from 1 to 128, got 200');
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

  describe('tokens from a flag, a file or the environment', () => {
    type Source = 'flag' | 'file' | 'env';
    type Kind = 'registration' | 'dial' | 'status';
    const ENV: Record<Kind, string> = { registration: 'RIDPROXY_TOKEN', dial: 'RIDPROXY_DIAL_TOKEN', status: 'RIDPROXY_STATUS_TOKEN' };
    const SOURCES: Source[] = ['flag', 'file', 'env'];

    /** The arguments and environment that give `token` to a command through `source`; files alternate \n and \r\n endings. */
    function give(config: string, kind: Kind, flag: string, token: string, source: Source): { args: string[]; env: Record<string, string> } {
      if (source === 'flag') return { args: [flag, token], env: {} };
      if (source === 'env') return { args: [], env: { [ENV[kind]]: token } };
      const file = join(config, `${kind}-${randomBytes(4).toString('hex')}.token`);
      writeFileSync(file, `${token}${kind === 'dial' ? '\r\n' : '\n'}`, { mode: 0o600 });
      return { args: [`${flag}-file`, file], env: {} };
    }

    function merge(...parts: Array<{ args: string[]; env: Record<string, string> }>): { args: string[]; env: Record<string, string> } {
      return { args: parts.flatMap((p) => p.args), env: Object.assign({}, ...parts.map((p) => p.env)) };
    }

    // Three rounds rotate the sources, so each token comes from each source on the proxy and on its client.
    it.each([0, 1, 2])('round %i: start, serve, connect and status work with their tokens, and no process prints a token', async (round) => {
      const config = isolatedConfig();
      const proxySource = (kind: number): Source => SOURCES[(round + kind) % 3];
      const clientSource = (kind: number): Source => SOURCES[(round + kind + 1) % 3];
      const tokens: Record<Kind, string> = {
        registration: `reg-${randomBytes(12).toString('hex')}`,
        dial: `dial-${randomBytes(12).toString('hex')}`,
        status: `status-${randomBytes(12).toString('hex')}`,
      };
      const echoPort = await listening(createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket)));
      const processes: Array<{ stdout(): string; stderr(): string }> = [];
      const run = (args: string[], env: Record<string, string>) => {
        const cli = runCli([...args, '--log-level', 'debug'], { config, env });
        processes.push(cli);
        return cli;
      };
      const toExit = async (args: string[], env: Record<string, string>) => {
        const result = await runToExit(args, config, env);
        processes.push({ stdout: () => result.stdout, stderr: () => result.stderr });
        return result;
      };

      const proxyTokens = merge(
        give(config, 'registration', '--token', tokens.registration, proxySource(0)),
        give(config, 'dial', '--dial-token', tokens.dial, proxySource(1)),
        give(config, 'status', '--status-token', tokens.status, proxySource(2)),
      );
      const proxy = run(['start', '--listen', '127.0.0.1:0', ...proxyTokens.args], proxyTokens.env);
      const proxyEndpoint = await proxy.firstLine;
      await waitFor(() => proxy.stderr().includes('proxy listening'), 'the proxy to log that it listens');
      const listeningLine = JSON.parse(proxy.stderr().split('\n').find((line) => line.includes('proxy listening'))!) as Record<string, unknown>;
      expect(listeningLine).toMatchObject({
        token: true,
        tokenSource: proxySource(0),
        dialToken: true,
        dialTokenSource: proxySource(1),
        statusToken: true,
        statusTokenSource: proxySource(2),
      });

      const serveToken = give(config, 'registration', '--token', tokens.registration, clientSource(0));
      const serve = run(['serve', '--proxy', proxyEndpoint, '--forward', `127.0.0.1:${echoPort}`, ...serveToken.args], serveToken.env);
      const serverEndpoint = await serve.firstLine;

      const dialToken = give(config, 'dial', '--dial-token', tokens.dial, clientSource(1));
      const stdio = run(['connect', serverEndpoint, '--stdio', ...dialToken.args], dialToken.env);
      const reply = digestStream(stdio.child.stdout!);
      stdio.child.stdin!.end('through the proxy');
      expect((await reply).bytes).toBe('through the proxy'.length);
      expect((await stdio.exited).code).toBe(0);

      const statusToken = give(config, 'status', '--token', tokens.status, clientSource(2));
      const status = await toExit(['status', proxyEndpoint, '--json', ...statusToken.args], statusToken.env);
      expect(status.code).toBe(0);
      expect((JSON.parse(status.stdout) as { servers: Array<{ routingId: string }> }).servers.map((s) => s.routingId)).toEqual([serverEndpoint.split('/').pop()]);

      // The tokens are really required, so the runs above passed because each source delivered its token.
      const undialled = await toExit(['connect', serverEndpoint, '--stdio'], {});
      expect(undialled.code).toBe(1);
      expect(undialled.stderr).toContain('requires a valid dial token');
      const withoutStatusToken = await toExit(['status', proxyEndpoint], {});
      expect(withoutStatusToken.code).toBe(1);
      expect(withoutStatusToken.stderr).toContain('only to callers presenting its status token');

      proxy.child.kill('SIGTERM');
      serve.child.kill('SIGTERM');
      await Promise.all([proxy.exited, serve.exited]);
      expect(proxy.stderr()).toContain('proxy stopped');
      for (const cli of processes) {
        for (const output of [cli.stdout(), cli.stderr()]) {
          for (const token of Object.values(tokens)) expect(output).not.toContain(token);
        }
      }
    });

    it('refuses a flag value together with its file', async () => {
      const config = isolatedConfig();
      const file = join(config, 'dial.token');
      writeFileSync(file, 'secret\n', { mode: 0o600 });
      const result = await runToExit(['start', '--listen', '127.0.0.1:0', '--dial-token', 'secret', '--dial-token-file', file], config);
      expect(result.code).toBe(1);
      expect(errorLine(result.stderr)).toBe('proxy: give --dial-token or --dial-token-file, not both');
    });

    it('refuses a token file readable by others', async () => {
      const config = isolatedConfig();
      const file = join(config, 'status.token');
      writeFileSync(file, 'secret\n');
      chmodSync(file, 0o644);
      const result = await runToExit(['status', 'ridp://127.0.0.1:1/' + '0'.repeat(31) + '1', '--token-file', file], config);
      expect(result.code).toBe(1);
      expect(errorLine(result.stderr)).toBe(`proxy: token file ${file} is readable by others (mode 0644); chmod 600 it`);
    });

    it('refuses an empty token file, whatever its newline', async () => {
      const config = isolatedConfig();
      const file = join(config, 'dial.token');
      writeFileSync(file, '\n', { mode: 0o600 });
      const result = await runToExit(['connect', `ridp://127.0.0.1:1/${'0'.repeat(31)}1`, '--stdio', '--dial-token-file', file], config);
      expect(result.code).toBe(1);
      expect(errorLine(result.stderr)).toBe(`proxy: token file ${file} is empty`);
    });

    it('refuses a missing token file before it creates an identity or dials', async () => {
      const config = isolatedConfig();
      const file = join(config, 'nonexistent.token');
      const result = await runToExit(['serve', '--proxy', '127.0.0.1:1', '--insecure-any-proxy', '--forward', '127.0.0.1:2', '--token-file', file], config);
      expect(result.code).toBe(1);
      expect(errorLine(result.stderr)).toBe(`proxy: token file ${file}: no such file`);
      expect(result.stderr).not.toContain('created a new identity');
    });

    it('refuses an empty token from a flag or the environment', async () => {
      const config = isolatedConfig();
      const flag = await runToExit(['start', '--listen', '127.0.0.1:0', '--token', ''], config);
      expect(flag.code).toBe(1);
      expect(errorLine(flag.stderr)).toBe('proxy: --token is empty');
      const env = await runToExit(['start', '--listen', '127.0.0.1:0'], config, { RIDPROXY_STATUS_TOKEN: '' });
      expect(env.code).toBe(1);
      expect(errorLine(env.stderr)).toBe('proxy: RIDPROXY_STATUS_TOKEN is set but empty');
    });

    it('--help names each token flag, its file and the variable it falls back to', async () => {
      const config = isolatedConfig();
      const cases: Array<[string, string, string]> = [
        ['start', '--token', 'RIDPROXY_TOKEN'],
        ['start', '--dial-token', 'RIDPROXY_DIAL_TOKEN'],
        ['start', '--status-token', 'RIDPROXY_STATUS_TOKEN'],
        ['serve', '--token', 'RIDPROXY_TOKEN'],
        ['connect', '--dial-token', 'RIDPROXY_DIAL_TOKEN'],
        ['status', '--token', 'RIDPROXY_STATUS_TOKEN'],
      ];
      const help = new Map<string, string>();
      for (const [command] of cases) if (!help.has(command)) help.set(command, (await runToExit([command, '--help'], config)).stdout.replace(/\s+/g, ' '));
      for (const [command, flag, env] of cases) {
        expect(help.get(command)).toContain(`${flag} <secret>`);
        expect(help.get(command)).toMatch(new RegExp(`${flag} <secret> .*?else read from ${flag}-file, else \\$${env} `));
        expect(help.get(command)).toContain(`${flag}-file <path>`);
      }
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
    // Some traffic, so the byte columns have something to count.
    const stdio = runCli(['connect', serverEndpoint, '--stdio', '--log-level', 'warn'], { config });
    stdio.child.stdin!.end(randomBytes(3000));
    expect((await digestStream(stdio.child.stdout!)).bytes).toBe(3000);
    const table = await runToExit(['status', proxyEndpoint], config);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(rid);
    const json = await runToExit(['status', proxyEndpoint, '--json'], config);
    const report = JSON.parse(json.stdout) as { servers: Array<Record<string, unknown>> };
    expect(report.servers.map((s) => s.routingId)).toEqual([rid]);
    // The JSON speaks the table's words: SENT is bytesSent, RECEIVED is bytesReceived, both from the server's side.
    const [server] = report.servers as Array<{ bytesSent: number; bytesReceived: number }>;
    expect(Object.keys(server).sort()).toEqual(['address', 'bytesReceived', 'bytesSent', 'connectedSeconds', 'routingId', 'vcs']);
    expect(server.bytesSent).toBeGreaterThan(3000);
    expect(server.bytesReceived).toBeGreaterThan(3000);
    const [header, row] = table.stdout.split('\n').slice(-3);
    const cells = row.split(/\s{2,}/);
    const columns = header.split(/\s{2,}/);
    expect(columns).toEqual(['ROUTING ID', 'FROM', 'VCS', 'SENT', 'RECEIVED', 'CONNECTED']);
    expect(cells[columns.indexOf('SENT')]).toBe(`${(server.bytesSent / 1024).toFixed(1)} KiB`);
  });
});
