import { createServer, connect, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Identity, Reason, type Manager, type Proxy } from '../../src/index.js';
import { IngressDialer } from '../../src/ingress/dialer.js';
import { PublicPorts, parsePortRange } from '../../src/ingress/ports.js';
import { useNetwork } from '../fixtures.js';
import { waitFor } from '../helpers.js';
import { freePortRange, serveIngressFlows } from './fixtures.js';

const net = useNetwork({ checkLeaks: true });

/** A proxy whose public ports are base..base+size-1 on 127.0.0.1, with its ingress dialing servers. */
async function proxyWithPorts(size: number, maxPerKey = 1): Promise<{ proxy: Proxy; ports: PublicPorts; base: number; ingress: Identity }> {
  const base = await freePortRange(size);
  const ingress = Identity.generate();
  const ports = new PublicPorts({ host: '127.0.0.1', from: base, to: base + size - 1, maxPerKey, ingressRoutingId: ingress.routingId });
  const proxy = await net.proxy({ registrationHook: ports });
  const dialer = new IngressDialer(proxy, ingress, () => undefined);
  ports.attach((rid, origin) => dialer.open(rid, origin));
  net.defer(async () => {
    await ports.close();
    await dialer.close();
  });
  return { proxy, ports, base, ingress };
}

/** A server that answers each flow from the ingress with its origin message as a line, then echoes. */
async function echoServer(proxy: Proxy, publicPorts: number[], identity = Identity.generate()): Promise<{ manager: Manager; tcp: string[]; close(): void }> {
  const manager = net.manager({ identity });
  const registration = await manager.proxyListen('proxy', proxy.endpoint, { publicPorts });
  serveIngressFlows(
    manager,
    () => registration.ingress.routingId,
    (flow, origin) => {
      flow.write(`${JSON.stringify(origin ?? null)}\n`);
      flow.pipe(flow);
    },
  );
  return { manager, tcp: registration.ingress.tcp, close: () => registration.close() };
}

function portOf(address: string): number {
  return Number(/:(\d+)$/.exec(address)![1]);
}

/** Connects to a public port and reads the origin line the echo server sends first. */
async function reach(port: number): Promise<{ socket: Socket; origin: { via: string; client: string } }> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  let text = '';
  const line = await new Promise<string>((resolve, reject) => {
    socket.on('data', function onData(chunk: Buffer) {
      text += chunk.toString();
      const end = text.indexOf('\n');
      if (end < 0) return;
      socket.off('data', onData);
      resolve(text.slice(0, end));
    });
    socket.once('close', () => reject(new Error(`port ${port} closed before the service answered`)));
  });
  net.defer(async () => socket.destroy());
  return { socket, origin: JSON.parse(line) as { via: string; client: string } };
}

async function echoes(socket: Socket, text: string): Promise<string> {
  socket.write(text);
  let got = '';
  await new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString();
      if (got.length >= text.length) resolve();
    });
  });
  return got;
}

async function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('public TCP ports', () => {
  it('carries a raw TCP client to the service, which learns the client\'s address from the origin message', async () => {
    const { proxy, base } = await proxyWithPorts(2);
    const server = await echoServer(proxy, [0]);
    expect(server.tcp).toEqual([`127.0.0.1:${base}`]);
    const { socket, origin } = await reach(base);
    expect(origin).toEqual({ via: 'tcp', client: `127.0.0.1:${socket.localPort}` });
    expect(await echoes(socket, 'through the public port')).toBe('through the public port');
  });

  it('refuses ports outside the range, over the per-key cap, in use by another server or program, and when none is free', async () => {
    const { proxy, base } = await proxyWithPorts(2);
    const refusal = async (ports: number[]): Promise<{ code: string; reason: number; message: string }> => {
      const manager = net.manager();
      return manager.proxyListen('proxy', proxy.endpoint, { publicPorts: ports }).then(
        () => {
          throw new Error(`ports ${ports.join(',')} were not refused`);
        },
        (err: { code: string; reason: number; message: string }) => err,
      );
    };
    expect(await refusal([base + 2])).toMatchObject({ code: 'ERR_REGISTRATION_REFUSED', reason: Reason.Refused, message: expect.stringContaining(`public port ${base + 2} is outside the range this proxy allows (${base}-${base + 1})`) });
    expect(await refusal([80])).toMatchObject({ reason: Reason.Refused, message: expect.stringContaining('outside the range') });
    expect(await refusal([0, 0])).toMatchObject({ reason: Reason.Limit, message: expect.stringContaining('asked for 2 public ports; this proxy allows 1 per key') });
    const holder = await echoServer(proxy, [base]);
    expect(holder.tcp).toEqual([`127.0.0.1:${base}`]);
    expect(await refusal([base])).toMatchObject({ reason: Reason.Refused, message: expect.stringContaining(`public port ${base} is in use by another server`) });
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(base + 1, '127.0.0.1', resolve));
    net.defer(() => new Promise((resolve) => squatter.close(resolve)));
    expect(await refusal([base + 1])).toMatchObject({ reason: Reason.Refused, message: expect.stringContaining(`public port ${base + 1} is in use on the proxy's host`) });
    expect(await refusal([0])).toMatchObject({ reason: Reason.Limit, message: expect.stringContaining('no public port is free') });
    // None of it disturbed the port that is held.
    const { socket } = await reach(base);
    expect(await echoes(socket, 'still here')).toBe('still here');
  });

  it('closes a port when its registration ends, and gives it back to the same key first', async () => {
    const { proxy, base } = await proxyWithPorts(3, 1);
    const identity = Identity.generate();
    const first = await echoServer(proxy, [0], identity);
    const port = portOf(first.tcp[0]!);
    first.close();
    await waitFor(() => refusesConnections(port), 'the public port to close');
    // Another key asking for any port gets one nobody had.
    const other = await echoServer(proxy, [0]);
    expect(portOf(other.tcp[0]!)).not.toBe(port);
    const again = await echoServer(proxy, [0], identity);
    expect(portOf(again.tcp[0]!)).toBe(port);
    expect(port).toBeGreaterThanOrEqual(base);
    expect((await reach(port)).origin.via).toBe('tcp');
  });

  it('keeps the port open while the same key registers again from a new connection', async () => {
    const { proxy, ports } = await proxyWithPorts(2);
    const identity = Identity.generate();
    const old = await echoServer(proxy, [0], identity);
    const port = portOf(old.tcp[0]!);
    const replacement = await echoServer(proxy, [0], identity);
    expect(portOf(replacement.tcp[0]!)).toBe(port);
    await waitFor(() => proxy.stats().connections === 1, 'the superseded connection to close');
    expect(ports.portsOf(identity.routingId.toString())).toEqual([port]);
    expect((await reach(port)).origin.via).toBe('tcp');
    replacement.close();
    await waitFor(() => refusesConnections(port), 'the public port to close');
  });

  it('answers a malformed publicPort with a refusal, never an exception', () => {
    const ports = new PublicPorts({ from: 20000, to: 20001 });
    for (const value of ['80', -1, 1.5, 70000, null, {}, [], Array(65).fill(0), [0, 'x']]) {
      const verdict = ports.register('00'.repeat(16), { publicPort: value }, {});
      expect(verdict, JSON.stringify(value)).toMatchObject({ refused: { reason: Reason.Refused } });
    }
    expect(ports.register('00'.repeat(16), {}, {})).toEqual({ document: {} });
  });

  it('parses the --tcp-ports range', () => {
    expect(parsePortRange('20000-20999')).toEqual({ host: '0.0.0.0', from: 20000, to: 20999 });
    expect(parsePortRange('127.0.0.1:5-6')).toEqual({ host: '127.0.0.1', from: 5, to: 6 });
    expect(parsePortRange('[::1]:5-6')).toEqual({ host: '::1', from: 5, to: 6 });
    for (const bad of ['20000', '2-1', '0-5', '5-70000', 'a-b']) expect(() => parsePortRange(bad)).toThrow(/invalid port range/);
  });
});
