import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { delay, readAll, socketTo, startRelay, waitFor, type Relay } from '../helpers.js';
import { freePort, isolatedConfig, killAll, runCli, runToExit, type CliProcess } from './cli.js';

const servers: Server[] = [];
const relays: Relay[] = [];

afterEach(async () => {
  await killAll();
  await Promise.all(relays.splice(0).map((relay) => relay.close()));
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A local service that answers every connection with `name` and closes: which serve a client reached. */
async function namedService(name: string): Promise<number> {
  const server = createServer((socket) => socket.end(name));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** What a client reaching `endpoint` through `connect --stdio` gets back. */
async function reach(endpoint: string, config: string): Promise<string> {
  const cli = runCli(['connect', endpoint, '--stdio', '--log-level', 'warn'], { config });
  cli.child.stdin!.end();
  const reply = (await readAll(cli.child.stdout!)).toString();
  await cli.exited;
  return reply;
}

/** What a TCP client of `connect --local` gets back. */
async function fetchLocal(port: number): Promise<string> {
  return (await readAll(await socketTo(port))).toString();
}

async function keygen(config: string, name: string): Promise<string> {
  const file = join(config, name);
  expect((await runToExit(['keygen', '--out', file], config)).code).toBe(0);
  return file;
}

function serve(config: string, proxy: string, forward: string | number, extra: string[] = []): CliProcess {
  return runCli(['serve', '--proxy', proxy, '--forward', String(forward), ...extra], { config });
}

/**
 * A proxy, and a relay in front of it through which a serve can register, so that the test can
 * later break the serve's side of that connection while the proxy's side stays open (as when a
 * host dies or a network is cut). `direct` turns an endpoint printed through the relay into the
 * one clients use; `abandon` breaks every relayed connection that way and collects what the proxy
 * still sends on them.
 */
async function proxyBehindRelay(config: string): Promise<{ proxyEndpoint: string; viaRelay: string; direct(endpoint: string): string; abandon(): () => string }> {
  const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
  const proxyEndpoint = await proxy.firstLine;
  const proxyPort = Number(new URL(proxyEndpoint).port);
  const relay = await startRelay(proxyPort);
  relays.push(relay);
  return {
    proxyEndpoint,
    viaRelay: proxyEndpoint.replace(`:${proxyPort}/`, `:${relay.port}/`),
    direct: (endpoint) => endpoint.replace(`:${relay.port}/`, `:${proxyPort}/`),
    abandon: () => {
      let heard = '';
      relay.abandon((chunk) => {
        heard += chunk.toString('latin1');
      });
      return () => heard;
    },
  };
}

/** Resolves with the time a process printed its first line (for serve: once registered). */
async function firstLineAt(cli: CliProcess): Promise<{ line: string; at: number }> {
  const line = await cli.firstLine;
  return { line, at: Date.now() };
}

describe('one routing id, one registration', () => {
  it('of two serves on one identity, the newer keeps serving and the other exits non-zero within 2 s saying why', async () => {
    const config = isolatedConfig();
    const identity = await keygen(config, 'shared.pem');
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const [httpPort, sshPort] = await Promise.all([namedService('http'), namedService('ssh')]);

    const first = serve(config, proxyEndpoint, httpPort, ['--identity', identity]);
    const endpoint = await first.firstLine;
    expect(await reach(endpoint, config)).toBe('http');

    const second = serve(config, proxyEndpoint, sshPort, ['--identity', identity]);
    const registered = await firstLineAt(second);
    expect(registered.line).toBe(endpoint);
    const { code } = await first.exited;
    const exitMs = Date.now() - registered.at;
    console.log(`displaced serve exited ${exitMs} ms after the other registered, with status ${code}`);
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(exitMs).toBeLessThan(2000);
    const line = first
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('proxy: '));
    expect(line).toEqual([
      expect.stringMatching(
        new RegExp(`^proxy: another process with this identity registered on ${escape(proxyEndpoint)} from 127\\.0\\.0\\.1:\\d+; give each serve its own --identity$`),
      ),
    ]);
    expect(JSON.parse(first.stderr().split('\n').find((l) => l.includes('another process registered'))!)).toMatchObject({ code: 'ERR_SUPERSEDED', level: 50 });

    // No flapping: the survivor stays registered and keeps answering, and never re-registered.
    await delay(1000);
    expect(second.child.exitCode).toBeNull();
    expect(await reach(endpoint, config)).toBe('ssh');
    expect(second.stderr()).not.toMatch(/re-registered|lost the proxy registration/);
  });

  it('a SIGKILLed serve restarted on its identity gets its registration back at once, even while the proxy still holds its old connection', async () => {
    const config = isolatedConfig();
    const identity = await keygen(config, 'server.pem');
    const { proxyEndpoint, viaRelay, direct, abandon } = await proxyBehindRelay(config);
    const servicePort = await namedService('service');
    const first = serve(config, viaRelay, servicePort, ['--identity', identity]);
    const endpoint = direct(await first.firstLine);
    expect(await reach(endpoint, config)).toBe('service');
    // After the kill, the proxy's side of the old connection stays open, as when the old host died.
    const heard = abandon();
    first.child.kill('SIGKILL');
    await first.exited;

    const startedAt = Date.now();
    const restarted = serve(config, proxyEndpoint, servicePort, ['--identity', identity]);
    expect(await restarted.firstLine).toBe(endpoint);
    const backMs = Date.now() - startedAt;
    console.log(`restarted serve registered ${backMs} ms after it was started (process start included)`);
    expect(backMs).toBeLessThan(3000);
    expect(await reach(endpoint, config)).toBe('service');
    // The proxy replaced the old connection and told it who took over.
    await waitFor(() => heard().includes('was registered by another connection from 127.0.0.1:'), 'the proxy to tell the old connection it was superseded');
    await delay(500);
    expect(restarted.child.exitCode).toBeNull();
    expect(restarted.stderr()).not.toContain('another process');
  });

  it('a serve whose own connection went stale registers again on a new one, which replaces the stale one, and keeps serving', async () => {
    const config = isolatedConfig();
    const { viaRelay, direct, abandon } = await proxyBehindRelay(config);
    const servicePort = await namedService('service');
    const server = serve(config, viaRelay, servicePort);
    const endpoint = direct(await server.firstLine);

    // serve's side of the connection breaks; the proxy's side lingers, still registered.
    const heard = abandon();
    await waitFor(() => server.stderr().includes('re-registered on the proxy'), 'serve to register again', 3000);
    await waitFor(() => heard().includes('was registered by another connection from 127.0.0.1:'), 'the proxy to replace the stale connection');
    expect(await reach(endpoint, config)).toBe('service');
    await delay(500);
    expect(server.child.exitCode).toBeNull();
    expect(server.stderr()).not.toContain('another process');
  });

  it('two serves with the default identity, one per --forward address, both keep serving', async () => {
    const config = isolatedConfig();
    const proxy = runCli(['start', '--listen', '127.0.0.1:0', '--log-level', 'warn'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const [httpPort, sshPort] = await Promise.all([namedService('http'), namedService('ssh')]);
    // The one identity every serve used before (keygen's default file): serve says it moved on.
    const legacy = await runToExit(['keygen'], config);
    expect(legacy.code).toBe(0);
    const legacyRid = legacy.stdout.trim();
    const http = serve(config, proxyEndpoint, `127.0.0.1:${httpPort}`);
    const ssh = serve(config, proxyEndpoint, sshPort);
    const [httpEndpoint, sshEndpoint] = await Promise.all([http.firstLine, ssh.firstLine]);
    expect(httpEndpoint).not.toBe(sshEndpoint);
    expect([httpEndpoint, sshEndpoint].map((e) => e.split('/').pop())).not.toContain(legacyRid);
    const warning = JSON.parse(http.stderr().split('\n').find((l) => l.includes('one identity per --forward address'))!) as Record<string, unknown>;
    expect(warning).toMatchObject({ level: 40, previous: join(config, 'ridproxy', 'identity.pem'), file: join(config, 'ridproxy', `serve-127.0.0.1-${httpPort}.pem`) });
    await delay(1000);
    expect([await reach(httpEndpoint, config), await reach(sshEndpoint, config)]).toEqual(['http', 'ssh']);
    expect([http.child.exitCode, ssh.child.exitCode]).toEqual([null, null]);

    // Each keeps its routing id across restarts, and `--forward PORT` is the same service as 127.0.0.1:PORT.
    ssh.child.kill('SIGTERM');
    expect((await ssh.exited).code).toBe(0);
    const again = serve(config, proxyEndpoint, `127.0.0.1:${sshPort}`);
    expect(await again.firstLine).toBe(sshEndpoint);
    expect(again.stderr()).not.toContain('created a new identity');
  });
});

describe('recovery after a proxy outage', () => {
  it('serve is registered again within 3 s of the proxy restarting after 30 s down', async () => {
    const config = isolatedConfig();
    const proxyPort = await freePort();
    const proxy = runCli(['start', '--listen', `127.0.0.1:${proxyPort}`, '--log-level', 'warn'], { config });
    const proxyEndpoint = await proxy.firstLine;
    const servicePort = await namedService('service');
    const server = serve(config, proxyEndpoint, servicePort);
    const endpoint = await server.firstLine;
    const tunnel = runCli(['connect', endpoint, '--local', '0'], { config });
    const localPort = Number((await tunnel.firstLine).split(':').pop());
    expect(await fetchLocal(localPort)).toBe('service');

    proxy.child.kill('SIGKILL');
    await proxy.exited;
    await waitFor(() => server.stderr().includes('lost the proxy registration'), 'serve to notice');
    // connect says its VC is gone (once, as a warning), and keeps listening.
    await waitFor(() => tunnel.stderr().includes('lost the VC to the server'), 'connect to notice');
    const lost = tunnel.stderr().split('\n').filter((l) => l.includes('lost the VC to the server'));
    expect(lost).toHaveLength(1);
    expect(JSON.parse(lost[0])).toMatchObject({ level: 40, code: 'ERR_CONNECTION_LOST', endpoint });
    await delay(30_000);
    const attemptsDuringOutage = (server.stderr().match(/registration failed; will retry/g) ?? []).length;

    const restarted = runCli(['start', '--listen', `127.0.0.1:${proxyPort}`, '--log-level', 'warn'], { config });
    expect(await restarted.firstLine).toBe(proxyEndpoint);
    const restartedAt = Date.now();
    await waitFor(() => server.stderr().includes('re-registered on the proxy'), 'serve to register again', 5000);
    const backMs = Date.now() - restartedAt;
    console.log(`serve re-registered ${backMs} ms after the proxy came back from 30 s down (${attemptsDuringOutage} attempts while it was down)`);
    expect(backMs).toBeLessThan(3000);
    // Gentle meanwhile: one attempt every 1-2 s once the backoff reached its cap, not a busy loop.
    expect(attemptsDuringOutage).toBeGreaterThan(12);
    expect(attemptsDuringOutage).toBeLessThan(40);
    expect(await reach(endpoint, config)).toBe('service');
    // The same connect process dials a new VC for its next local connection.
    expect(await fetchLocal(localPort)).toBe('service');
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
