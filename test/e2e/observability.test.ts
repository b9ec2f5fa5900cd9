import { randomBytes } from 'node:crypto';
import { get, request, createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import parsePrometheusTextFormat, { type PrometheusFamily as Family } from 'parse-prometheus-text-format';
import { afterEach, describe, expect, it } from 'vitest';
import { Endpoint, Manager } from '../../src/index.js';
import { serveEcho } from '../fixtures.js';
import { readAll, waitFor } from '../helpers.js';
import { freePort, isolatedConfig, killAll, runCli, type CliProcess } from './cli.js';

const BODY = randomBytes(200_000);
const servers: HttpServer[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await killAll();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function httpService(): Promise<number> {
  const server = createHttpServer((_req, res) => res.end(BODY));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function httpGet(port: number, path: string, method = 'GET'): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

type LogLine = Record<string, unknown> & { msg: string; event?: string };

/** The JSON log lines a CLI process wrote to stderr so far. */
function logLines(cli: CliProcess): LogLine[] {
  return cli
    .stderr()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);
}

function events(cli: CliProcess, event: string): LogLine[] {
  return logLines(cli).filter((line) => line.event === event);
}

async function eventually(cli: CliProcess, event: string, match: (line: LogLine) => boolean = () => true): Promise<LogLine> {
  await waitFor(() => events(cli, event).some(match), `a "${event}" log line`, 10_000);
  return events(cli, event).find(match)!;
}

const portOf = (endpointOrAddress: string): number => Number(/:(\d+)(\/|$)/.exec(endpointOrAddress)![1]);
const ridOf = (endpoint: string): string => endpoint.slice(-32);

/** Opens a TCP connection to `port` (which makes `connect --local` dial) and sends an HTTP request; resolves with what came back. */
function tunnelGet(port: number): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

/** A local connection through `connect --local` whose dial the proxy refuses: it is closed without a reply. */
function refusedTunnel(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    sockets.push(socket);
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
  });
}

async function startConnect(config: string, endpoint: string, dialToken: string): Promise<{ cli: CliProcess; port: number }> {
  const cli = runCli(['connect', endpoint, '--local', '0', '--dial-token', dialToken], { config });
  return { cli, port: portOf(await cli.firstLine) };
}

describe('proxy start logs who, when and why', () => {
  it('logs a registration, refused dials (unknown routing id, wrong dial token) and a VC close with its bytes; serve logs the flow', async () => {
    const config = isolatedConfig();
    const httpPort = await httpService();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--dial-token', 'right'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const serve = runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(httpPort)], { config });
    const serverEndpoint = await serve.firstLine;
    const serverRid = ridOf(serverEndpoint);

    const registered = await eventually(proxy, 'registered');
    expect(registered).toMatchObject({ level: 30, routingId: serverRid, msg: 'server registered' });
    expect(registered.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(typeof registered.time).toBe('number');

    // A VC that carries one HTTP exchange, then ends when connect stops.
    const good = await startConnect(config, serverEndpoint, 'right');
    const response = await tunnelGet(good.port);
    expect(response.body.equals(BODY)).toBe(true);
    const opened = await eventually(proxy, 'vcOpened');
    expect(opened).toMatchObject({ server: serverRid, msg: 'VC opened' });
    expect(opened.client).toMatch(/^[0-9a-f]{32}$/);
    good.cli.child.kill('SIGTERM');
    await good.cli.exited;
    const closed = await eventually(proxy, 'vcClosed');
    expect(closed).toMatchObject({ client: opened.client, clientAddress: opened.clientAddress, server: serverRid, serverAddress: registered.address, accepted: true, code: 'ERR_CLOSED', closedBy: 'client', msg: 'VC closed' });
    // Ciphertext: the HTTP body plus headers, records and handshakes.
    expect(closed.bytesToClient as number).toBeGreaterThan(BODY.length);
    expect(closed.bytesToServer as number).toBeGreaterThan(50);
    expect(closed.bytesToServer as number).toBeLessThan(BODY.length);
    expect(closed.durationMs as number).toBeGreaterThanOrEqual(0);

    // serve: one line per flow, with the peer's routing id and the plaintext bytes.
    const flow = await eventually(serve, 'flow');
    expect(flow).toMatchObject({ level: 30, peer: opened.client, msg: 'flow finished' });
    expect(flow.bytesToPeer as number).toBeGreaterThan(BODY.length);
    expect(flow.bytesToPeer as number).toBeLessThan(closed.bytesToClient as number);
    expect(flow.bytesFromPeer as number).toBeGreaterThan(10);
    expect(flow.durationMs as number).toBeGreaterThanOrEqual(0);

    // A dial to a routing id nobody registered.
    const nobody = randomBytes(16).toString('hex');
    const unknown = await startConnect(config, `${serverEndpoint.slice(0, -32)}${nobody}`, 'right');
    await refusedTunnel(unknown.port);
    const unknownRefusal = await eventually(proxy, 'refused', (line) => line.code === 'ERR_UNKNOWN_DESTINATION');
    expect(unknownRefusal).toMatchObject({ kind: 'vc', destination: nobody, addressGroup: '127.0.0.1' });
    expect(unknownRefusal.reason).toContain(`no server with routing id ${nobody}`);
    expect(unknownRefusal.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(unknownRefusal.routingId).toMatch(/^[0-9a-f]{32}$/);

    // A dial with the wrong token.
    const wrong = await startConnect(config, serverEndpoint, 'wrong');
    await refusedTunnel(wrong.port);
    const tokenRefusal = await eventually(proxy, 'refused', (line) => line.code === 'ERR_UNAUTHORIZED');
    expect(tokenRefusal).toMatchObject({ kind: 'vc', destination: serverRid, addressGroup: '127.0.0.1' });
    expect(tokenRefusal.reason).toContain('requires a valid dial token');
    expect(tokenRefusal.routingId).not.toBe(unknownRefusal.routingId);
  });

  it('sums a flood of refused connections from one address into a few lines', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--max-connections-per-address', '1', '--handshake-timeout', '60000', '--refusal-log-interval', '1000'], { config });
    const port = portOf(await proxy.firstLine);
    // This one holds the address's only slot, in its handshake; every connection after it is refused.
    const holder = connect({ host: '127.0.0.1', port });
    sockets.push(holder);
    await new Promise((resolve) => holder.once('connect', resolve));
    const FLOOD = 500;
    for (let done = 0; done < FLOOD; done += 50) {
      await Promise.all(Array.from({ length: 50 }, () => refusedTunnel(port)));
    }
    const refusals = (): LogLine[] => events(proxy, 'refused').filter((line) => line.kind === 'connection');
    // A full line stands for one refusal, a summary for the ones it counts.
    const counted = (): number => refusals().reduce((sum, line) => sum + ((line.suppressed as number | undefined) ?? 1), 0);
    await waitFor(() => counted() === FLOOD, `log lines accounting for ${FLOOD} refusals`, 10_000);
    const lines = refusals();
    const [first, ...summaries] = lines;
    expect(first).toMatchObject({ code: 'ERR_LIMIT', addressGroup: '127.0.0.1' });
    expect(first.reason).toContain('holds its limit of 1 connections');
    expect(summaries.length).toBeGreaterThan(0);
    for (const summary of summaries) {
      if (summary.suppressed === undefined) continue;
      expect(summary).toMatchObject({ code: 'ERR_LIMIT', addressGroup: '127.0.0.1' });
      expect(summary.msg).toMatch(/^\d+ more like this in the last [\d.]+ s$/);
    }
    // Two lines at most per interval the flood lasted, however many connections it made.
    const seconds = ((lines.at(-1)!.time as number) - (first.time as number)) / 1000;
    expect(lines.length).toBeLessThanOrEqual(2 * Math.ceil(seconds + 1));
    expect(lines.length).toBeLessThan(20);
    console.log(`${FLOOD} refused connections: ${lines.length} log lines over ${seconds} s`);
  });
  it('keeps serving while nothing reads its stderr, and writes the lines once it is read again', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0'], { config });
    const endpoint = Endpoint.parse(await proxy.firstLine);
    // From here on stderr is not read: the pipe fills after some 80 KiB (the kernel's 64 KiB and
    // the stream's buffer), a few hundred lines. A proxy writing its log synchronously stops there.
    proxy.child.stderr!.pause();
    const before = logLines(proxy).length;
    const CYCLES = 600;
    for (let done = 0; done < CYCLES; done += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          const manager = new Manager();
          try {
            await manager.proxyListen('main', endpoint);
          } finally {
            await manager.close();
          }
        }),
      );
    }
    // Registrations and VCs still work while some 200 KiB of log lines wait.
    const server = new Manager();
    const client = new Manager();
    try {
      const { endpoint: serverEndpoint } = await server.proxyListen('main', endpoint);
      serveEcho(server);
      const flow = await client.dial(serverEndpoint);
      flow.end(Buffer.from('still relaying'));
      expect((await readAll(flow)).toString()).toBe('still relaying');
    } finally {
      await client.close();
      await server.close();
    }
    proxy.child.stderr!.resume();
    await waitFor(() => events(proxy, 'registered').length >= CYCLES + 1, `${CYCLES + 1} "registered" lines`, 20_000);
    const lines = logLines(proxy).slice(before);
    expect(lines.every((line) => line.droppedLogLines === undefined)).toBe(true);
    expect(events(proxy, 'unregistered').length).toBeGreaterThanOrEqual(CYCLES);
    expect(Buffer.byteLength(proxy.stderr())).toBeGreaterThan(150_000);
  });
});

/** GET /metrics, parsed as Prometheus text. */
async function scrape(port: number): Promise<Map<string, Family>> {
  const { status, body } = await httpGet(port, '/metrics');
  expect(status).toBe(200);
  const families = parsePrometheusTextFormat(body.toString('utf8'));
  return new Map(families.map((family) => [family.name, family]));
}

/** The value of one series: the family's sample whose labels include `labels`; 0 when there is none (a labelled counter not yet incremented). */
function valueOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no metric ${name}`);
  const sample = family.metrics.find((metric) => Object.entries(labels).every(([key, value]) => metric.labels?.[key] === value));
  return sample === undefined ? 0 : Number(sample.value);
}

describe('proxy start --metrics', () => {
  it('serves Prometheus text whose counters follow registrations, VCs, bytes and refusals, and /healthz', async () => {
    const config = isolatedConfig();
    const httpPort = await httpService();
    const metricsPort = await freePort();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--dial-token', 'right', '--metrics', String(metricsPort)], { config });
    const proxyEndpoint = await proxy.firstLine;
    expect(logLines(proxy).find((line) => line.msg === 'serving metrics')).toMatchObject({ metrics: `http://127.0.0.1:${metricsPort}/metrics` });

    const health = await httpGet(metricsPort, '/healthz');
    expect(health).toMatchObject({ status: 200 });
    expect(health.body.toString().trim()).toBe('ok');

    let m = await scrape(metricsPort);
    expect(m.get('ridproxy_registrations_total')?.type).toBe('COUNTER');
    expect(m.get('ridproxy_connections')?.type).toBe('GAUGE');
    expect(valueOf(m, 'ridproxy_registrations')).toBe(0);
    expect(valueOf(m, 'ridproxy_registrations_total')).toBe(0);
    expect(valueOf(m, 'ridproxy_buffer_budget_bytes')).toBe(1 << 30);
    // prom-client's default metrics: the event loop's lag among them.
    expect(m.has('nodejs_eventloop_lag_seconds')).toBe(true);
    // No series carries a routing id or an address.
    for (const family of m.values()) for (const metric of family.metrics) for (const value of Object.values(metric.labels ?? {})) expect(value).not.toMatch(/[0-9a-f]{32}|127\.0\.0\.1/);

    const serve = runCli(['serve', '--proxy', proxyEndpoint, '--forward', String(httpPort)], { config });
    const serverEndpoint = await serve.firstLine;
    m = await scrape(metricsPort);
    expect(valueOf(m, 'ridproxy_registrations')).toBe(1);
    expect(valueOf(m, 'ridproxy_registrations_total')).toBe(1);
    expect(valueOf(m, 'ridproxy_connections')).toBe(1);

    const good = await startConnect(config, serverEndpoint, 'right');
    expect((await tunnelGet(good.port)).body.equals(BODY)).toBe(true);
    m = await scrape(metricsPort);
    expect(valueOf(m, 'ridproxy_vcs_open')).toBe(1);
    expect(valueOf(m, 'ridproxy_vcs_opened_total')).toBe(1);
    expect(valueOf(m, 'ridproxy_connections')).toBe(2);
    expect(valueOf(m, 'ridproxy_reserved_bytes')).toBeGreaterThan(0);
    expect(valueOf(m, 'ridproxy_forwarded_bytes_total', { direction: 'to_client' })).toBeGreaterThan(BODY.length);
    const toServer = valueOf(m, 'ridproxy_forwarded_bytes_total', { direction: 'to_server' });
    expect(toServer).toBeGreaterThan(50);
    expect(m.get('ridproxy_queued_bytes')?.type).toBe('GAUGE');

    // A wrong dial token, and a peer that is not ridproxy at all.
    const wrong = await startConnect(config, serverEndpoint, 'wrong');
    await refusedTunnel(wrong.port);
    const proxyPort = portOf(proxyEndpoint);
    const probe = connect({ host: '127.0.0.1', port: proxyPort }, () => probe.write('GET / HTTP/1.0\r\n\r\n'));
    probe.on('error', () => undefined);
    sockets.push(probe);
    await waitFor(() => events(proxy, 'refused').length === 2, 'two refusals logged', 10_000);
    m = await scrape(metricsPort);
    expect(valueOf(m, 'ridproxy_refusals_total', { kind: 'vc', code: 'ERR_UNAUTHORIZED' })).toBe(1);
    expect(valueOf(m, 'ridproxy_refusals_total', { kind: 'handshake', code: 'ERR_BAD_PREFACE' })).toBe(1);
    expect(valueOf(m, 'ridproxy_handshake_failures_total', { code: 'ERR_BAD_PREFACE' })).toBe(1);

    good.cli.child.kill('SIGTERM');
    await good.cli.exited;
    await waitFor(() => events(proxy, 'vcClosed').length === 1, 'the VC closed', 10_000);
    m = await scrape(metricsPort);
    expect(valueOf(m, 'ridproxy_vcs_open')).toBe(0);
    expect(valueOf(m, 'ridproxy_reserved_bytes')).toBe(0);
    expect(valueOf(m, 'ridproxy_vcs_closed_total', { outcome: 'ERR_CLOSED', accepted: 'true' })).toBe(1);
    expect(valueOf(m, 'ridproxy_forwarded_bytes_total', { direction: 'to_server' })).toBeGreaterThanOrEqual(toServer);

    // The metrics server answers what it does not serve, and survives a malformed request.
    expect((await httpGet(metricsPort, '/nothing')).status).toBe(404);
    expect((await httpGet(metricsPort, '/metrics', 'POST')).status).toBe(405);
    const garbage = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: metricsPort }, () => socket.write('\x00\x01 not http\r\n\r\n'));
      sockets.push(socket);
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
    });
    expect(garbage).toMatch(/^HTTP\/1\.1 400/);
    expect((await httpGet(metricsPort, '/healthz')).status).toBe(200);
    expect(proxy.child.exitCode).toBe(null);
  });

  it('logs the port it chose for --metrics with port 0, and serves there', async () => {
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0'], { config: isolatedConfig() });
    await proxy.firstLine;
    const url = logLines(proxy).find((line) => line.msg === 'serving metrics')?.metrics;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const port = portOf(String(url));
    expect(port).toBeGreaterThan(0);
    expect(await httpGet(port, '/healthz')).toMatchObject({ status: 200 });
  });

  it('refuses a --metrics address in use with one line and exit status 1', async () => {
    const config = isolatedConfig();
    const busy = createHttpServer();
    servers.push(busy);
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as AddressInfo;
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--metrics', `127.0.0.1:${port}`], { config });
    const { code } = await proxy.exited;
    expect(code).toBe(1);
    expect(proxy.stderr()).toContain(`proxy: cannot listen on 127.0.0.1:${port}: the address is already in use`);
    expect(proxy.stdout()).toBe('');
  });
});

describe('serve and connect --metrics, proxy --metrics-per-rid', () => {
  it('count the connections they carry, their bytes and outcomes, and report the registration and the last dial in /healthz', async () => {
    const config = isolatedConfig();
    const httpPort = await httpService();
    const [proxyMetricsPort, serveMetricsPort, connectMetricsPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--metrics', String(proxyMetricsPort), '--metrics-per-rid'], { config });
    const serve = runCli(['serve', '--proxy', await proxy.firstLine, '--forward', String(httpPort), '--metrics', String(serveMetricsPort)], { config });
    const serverEndpoint = await serve.firstLine;
    const connectCli = runCli(['connect', serverEndpoint, '--local', '0', '--metrics', String(connectMetricsPort)], { config });
    const localPort = portOf(await connectCli.firstLine);
    expect((await httpGet(serveMetricsPort, '/healthz')).status).toBe(200);
    expect((await httpGet(connectMetricsPort, '/healthz')).status).toBe(200);

    expect((await tunnelGet(localPort)).body.equals(BODY)).toBe(true);
    const settled = async (port: number): Promise<Map<string, Family>> => {
      let m = await scrape(port);
      await waitFor(async () => valueOf((m = await scrape(port)), 'ridproxy_tunnel_connections_total', { outcome: 'ok' }) === 1, 'the connection to be counted', 10_000);
      return m;
    };
    const served = await settled(serveMetricsPort);
    expect(served.get('ridproxy_tunnel_connections_total')?.type).toBe('COUNTER');
    expect(valueOf(served, 'ridproxy_tunnel_connections')).toBe(0);
    expect(valueOf(served, 'ridproxy_tunnel_bytes_total', { direction: 'to_peer' })).toBeGreaterThan(BODY.length);
    expect(valueOf(served, 'ridproxy_tunnel_bytes_total', { direction: 'from_peer' })).toBeGreaterThan(20);
    expect(valueOf(served, 'ridproxy_serve_registered')).toBe(1);
    expect(served.has('nodejs_eventloop_lag_seconds')).toBe(true);
    const connected = await settled(connectMetricsPort);
    expect(valueOf(connected, 'ridproxy_tunnel_bytes_total', { direction: 'from_peer' })).toBeGreaterThan(BODY.length);
    expect(valueOf(connected, 'ridproxy_connect_vcs_lost_total')).toBe(0);

    // The proxy's opt-in per routing id series: what the server sent, the body among it.
    const perRid = await scrape(proxyMetricsPort);
    expect(valueOf(perRid, 'ridproxy_server_bytes_total', { routing_id: ridOf(serverEndpoint), direction: 'sent' })).toBeGreaterThan(BODY.length);
    expect(valueOf(perRid, 'ridproxy_server_bytes_total', { routing_id: ridOf(serverEndpoint), direction: 'received' })).toBeGreaterThan(20);

    // The proxy dies: serve is unhealthy until it is back, connect once a dial has failed.
    proxy.child.kill('SIGKILL');
    await proxy.exited;
    await waitFor(async () => (await httpGet(serveMetricsPort, '/healthz')).status === 503, 'serve to report the lost registration', 10_000);
    const lost = await scrape(serveMetricsPort);
    expect(valueOf(lost, 'ridproxy_serve_registered')).toBe(0);
    expect(valueOf(lost, 'ridproxy_serve_registrations_lost_total')).toBe(1);
    await waitFor(async () => valueOf(await scrape(connectMetricsPort), 'ridproxy_connect_vcs_lost_total') === 1, 'connect to count the lost VC', 10_000);
    await refusedTunnel(localPort);
    await waitFor(async () => (await httpGet(connectMetricsPort, '/healthz')).status === 503, 'connect to report the failed dial', 10_000);
    const failed = await scrape(connectMetricsPort);
    const outcomes = failed.get('ridproxy_tunnel_connections_total')!.metrics.map((metric) => metric.labels?.outcome);
    expect(outcomes).toEqual(expect.arrayContaining(['ok', 'ERR_UNREACHABLE']));
  });
});
