import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { credentials } from '@grpc/grpc-js';
import { describe, expect, test } from 'vitest';
import { PersistentRegistration, RoutingId, type Flow, type ManagerOptions } from '../../src/index.js';
import { grpcBridge, serveGrpcReverse, type GrpcReverseServing, type ServeGrpcReverseOptions } from '../../src/grpc/index.js';
import { useNetwork } from '../fixtures.js';
import { delay, waitFor } from '../helpers.js';
import { echoServer, unary } from './service.js';
import { clientOf } from './tunnels.js';

const net = useNetwork({ checkLeaks: true });

/** grpc-js waits 1 s and more between reconnects by default; the tests wait for the agent, not for that. */
const QUICK_RECONNECT = { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 200 };

interface Setup {
  hub?: ManagerOptions;
  agent?: ManagerOptions;
  reverse?: ServeGrpcReverseOptions;
}

/**
 * A hub registered on a proxy (again and again, as PersistentRegistration does), which keeps the
 * flows agents open; an agent serving the echo server to it with serveGrpcReverse; and the hub's
 * client of the agent, through a reuse-only bridge.
 */
async function hubAndAgent(setup: Setup = {}) {
  const proxy = await net.proxy({ host: '127.0.0.1', port: 0 });
  const hub = net.manager(setup.hub);
  const registration = await PersistentRegistration.start(hub, 'hub', proxy.endpoint, { initialDelay: 20, maxDelay: 200 });
  net.defer(async () => registration.close());
  const held: Flow[] = [];
  void (async () => {
    for await (const flow of hub) {
      flow.on('error', () => undefined);
      held.push(flow);
    }
  })();
  const agent = net.manager(setup.agent);
  const { server } = echoServer();
  net.defer(async () => server.forceShutdown());
  const reverse = await serveGrpcReverse(agent, registration.endpoint!, server, { initialDelay: 50, maxDelay: 400, ...setup.reverse });
  net.defer(() => reverse.close());
  const events = record(reverse);
  const bridge = await grpcBridge(hub, agent.routingId, { reuseOnly: true });
  net.defer(() => bridge.close());
  const client = clientOf(net, bridge.target, credentials.createInsecure(), QUICK_RECONNECT);
  return { proxy, hub, held, agent, reverse, events, client };
}

/** Every event the agent emits, in order. */
function record(reverse: GrpcReverseServing): Array<[string, any]> {
  const events: Array<[string, any]> = [];
  for (const name of ['connected', 'lost', 'retrying'] as const) reverse.on(name, (info: unknown) => events.push([name, info]));
  return events;
}

const call = (client: any, text: string) => unary(client, 'echo', { text }, { waitForReady: true, deadline: Date.now() + 10_000 });

describe('serveGrpcReverse', () => {
  test('the hub calls the agent; the VC is destroyed; the agent dials again at once and the hub calls it again', async () => {
    const { held, reverse, events, client } = await hubAndAgent();
    expect(reverse.isConnected).toBe(true);
    expect(await call(client, 'one')).toEqual({ text: 'one', peer: 'server' });

    const first = reverse.vc!;
    const reconnected = once(reverse, 'connected');
    await waitFor(() => held.length === 1, 'the hub to accept the held flow');
    held[0]!.conn.destroy();
    const [{ vc, attempt }] = await reconnected;
    expect(vc).not.toBe(first);
    expect(attempt).toBe(1);
    expect(events.map(([name]) => name)).toEqual(['lost', 'connected']);
    expect(events[0]![1]).toMatchObject({ code: 'ERR_CONNECTION_LOST' });
    expect(await call(client, 'two')).toEqual({ text: 'two', peer: 'server' });
  });

  test("the held flow keeps the VC open past both ends' vcIdleTimeout", async () => {
    const { reverse, events, client } = await hubAndAgent({ hub: { vcIdleTimeout: 100 }, agent: { vcIdleTimeout: 100 } });
    const vc = reverse.vc!;
    await delay(500);
    expect(events).toEqual([]);
    expect(reverse.vc).toBe(vc);
    expect(vc.isOpen).toBe(true);
    expect(await call(client, 'still there')).toEqual({ text: 'still there', peer: 'server' });
  });

  test('the hub closing only the held flow makes the agent hold a new one on the same VC', async () => {
    const { held, reverse, events, client } = await hubAndAgent();
    const vc = reverse.vc!;
    await waitFor(() => held.length === 1, 'the hub to accept the held flow');
    const reconnected = once(reverse, 'connected');
    held[0]!.destroy();
    expect((await reconnected)[0].vc).toBe(vc);
    expect(events[0]).toEqual(['lost', expect.objectContaining({ code: 'ERR_STREAM_RESET' })]);
    await waitFor(() => held.length === 2, 'the hub to accept the new held flow');
    expect(await call(client, 'same VC')).toEqual({ text: 'same VC', peer: 'server' });

    // Closed again at once: a connection that short does not restart the backoff, so this dial waits its turn.
    const again = once(reverse, 'connected');
    held[1]!.destroy();
    expect((await again)[0].attempt).toBe(2);
  });

  test("the hub's proxy goes away and comes back: the agent retries with capped, jittered backoff, and the hub calls it again", async () => {
    const { proxy, reverse, events, client } = await hubAndAgent();
    expect(await call(client, 'before')).toEqual({ text: 'before', peer: 'server' });
    const lost = once(reverse, 'lost');
    await proxy.close();
    await lost;
    expect(reverse.isConnected).toBe(false);
    await waitFor(() => events.filter(([name]) => name === 'retrying').length >= 3, 'three failed dials');

    const reconnected = once(reverse, 'connected');
    await net.proxy({ host: '127.0.0.1', port: proxy.port, identity: proxy.identity });
    await reconnected;
    expect(await call(client, 'after')).toEqual({ text: 'after', peer: 'server' });

    const retries = events.filter(([name]) => name === 'retrying').map(([, info]) => info);
    expect(retries.map((r) => r.attempt)).toEqual(retries.map((_, i) => i + 1));
    // Attempt n + 1 waits between half and all of min(400, 50 * 2^(n-1)) ms.
    for (const { attempt, delay: wait } of retries) {
      const ceiling = Math.min(400, 50 * 2 ** (attempt - 1));
      expect(wait).toBeGreaterThanOrEqual(ceiling / 2);
      expect(wait).toBeLessThanOrEqual(ceiling);
    }
    expect(events.at(-1)).toEqual(['connected', expect.objectContaining({ attempt: retries.length + 1 })]);
  });

  test('close() during a backoff wait stops the agent: no more dials, and the hub cannot reach it', async () => {
    // Long waits: the agent is certainly waiting when close() comes.
    const { proxy, hub, agent, reverse, events } = await hubAndAgent({ reverse: { initialDelay: 20_000, maxDelay: 20_000 } });
    const retrying = once(reverse, 'retrying');
    await proxy.close();
    await retrying;
    const seen = events.length;
    await reverse.close();
    await reverse.done;
    await net.proxy({ host: '127.0.0.1', port: proxy.port, identity: proxy.identity });
    await delay(300);
    expect(events.length).toBe(seen);
    expect(reverse.isConnected).toBe(false);
    expect(() => hub.dialCached(agent.routingId)).toThrow(expect.objectContaining({ code: 'ERR_NO_CACHED_VC' }));
  });

  test('close() while connected drains the serving, releases the held flow, and the VC then idles out', async () => {
    const { hub, held, agent, reverse, client } = await hubAndAgent({ agent: { vcIdleTimeout: 200 } });
    expect(await call(client, 'x')).toEqual({ text: 'x', peer: 'server' });
    const vc = reverse.vc!;
    await waitFor(() => held.length === 1, 'the hub to accept the held flow');
    await reverse.close();
    expect(reverse.isConnected).toBe(false);
    // The agent's end idles out, and the hub's end closes with it.
    await vc.closed;
    await held[0]!.conn.closed;
    expect(() => hub.dialCached(agent.routingId)).toThrow(expect.objectContaining({ code: 'ERR_NO_CACHED_VC' }));
  });

  test("the agent's manager.close() ends it: done settles and it dials no more", async () => {
    const { agent, reverse, events } = await hubAndAgent();
    const vc = reverse.vc!;
    await agent.close();
    await reverse.done;
    await vc.closed;
    await delay(200);
    expect(events.filter(([name]) => name !== 'lost')).toEqual([]);
    expect(reverse.isConnected).toBe(false);
  });

  test("the agent's manager.stopListening() ends it too, as it ends serveGrpc", async () => {
    const { agent, reverse } = await hubAndAgent();
    await agent.stopListening();
    await reverse.done;
    expect(reverse.isConnected).toBe(false);
  });

  test('a first dial that fails rejects, and leaves nothing running', async () => {
    const agent = net.manager();
    const { server } = echoServer();
    net.defer(async () => server.forceShutdown());
    const nowhere = `ridp://127.0.0.1:1/${RoutingId.fromPublicKey(Buffer.alloc(32, 3))}`;
    await expect(serveGrpcReverse(agent, nowhere, server, { allowUnpinnedProxy: true })).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' });
  });
});

test('an agent closed during a backoff wait lets its process exit by itself', async () => {
  const script = fileURLToPath(new URL('./agent-exits.mjs', import.meta.url));
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  net.defer(async () => child.kill('SIGKILL'));
  let closedAt = 0;
  child.stdout.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('closed')) closedAt = Date.now();
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  expect(closedAt).toBeGreaterThan(0);
  expect(code).toBe(0);
  // The wait was a minute long; exiting within seconds of close() shows it left no timer (nor socket).
  expect(Date.now() - closedAt).toBeLessThan(10_000);
});
