import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { Proxy, type ProxyRefusedEvent } from '../../src/index.js';
import { encodePreface } from '../../src/wire/index.js';
import { useNetwork } from '../fixtures.js';
import { socketTo, waitFor } from '../helpers.js';

// A reconnect storm must be answered a batch of handshakes at a time (maxHandshakes), the rest
// waiting in a bounded line, or under load every handshake is slow and they all time out together.

function refusals(proxy: Proxy): ProxyRefusedEvent[] {
  const events: ProxyRefusedEvent[] = [];
  proxy.on('refused', (event) => events.push(event));
  return events;
}

/**
 * A raw TCP connection that sends the first byte of a preface and no more: a silent one gets no
 * slot, this one does, and holds it until handshakeTimeout.
 */
async function stalled(proxy: Proxy, expect: { handshakesInProgress: number; handshakesQueued: number }): Promise<Socket> {
  const socket = await socketTo(proxy.port);
  socket.on('error', () => undefined);
  socket.write(encodePreface().subarray(0, 1));
  // Connected one at a time, so that the proxy sees them in this order.
  await waitFor(() => {
    const stats = proxy.stats();
    return stats.handshakesInProgress === expect.handshakesInProgress && stats.handshakesQueued === expect.handshakesQueued;
  }, `the proxy to hold ${JSON.stringify(expect)}`);
  return socket;
}

function closed(socket: Socket): Promise<Buffer> {
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(received))));
}

describe('handshake admission', () => {
  const net = useNetwork();

  it('works on at most maxHandshakes handshakes at once, and every server of a storm registers', async () => {
    const proxy = await net.proxy({ maxHandshakes: 2 });
    let sampledPeak = 0;
    let sampledQueue = 0;
    const sampler = setInterval(() => {
      const stats = proxy.stats();
      sampledPeak = Math.max(sampledPeak, stats.handshakesInProgress);
      sampledQueue = Math.max(sampledQueue, stats.handshakesQueued);
    }, 1);
    try {
      const managers = Array.from({ length: 20 }, () => net.manager());
      await Promise.all(managers.map((manager) => manager.proxyListen('main', proxy.endpoint)));
    } finally {
      clearInterval(sampler);
    }
    const stats = proxy.stats();
    expect(stats.registrations).toBe(20);
    expect(stats.peakHandshakesInProgress).toBeGreaterThanOrEqual(1);
    expect(stats.peakHandshakesInProgress).toBeLessThanOrEqual(2);
    expect(sampledPeak).toBeLessThanOrEqual(2);
    expect(sampledQueue).toBeLessThanOrEqual(18);
    expect(stats).toMatchObject({ handshakesInProgress: 0, handshakesQueued: 0, connectionsRefused: 0 });
  });

  // A reset, or a FIN (a client whose own handshake timeout ran out): either way the connection
  // leaves the line at once, well before the proxy's handshake timeout (10 s), and gets nothing.
  it.each([
    ['resets', (socket: Socket): void => void socket.resetAndDestroy()],
    ['hangs up', (socket: Socket): void => void socket.end()],
  ] as const)('sends a waiting connection nothing, and forgets one that %s while it waits', async (_, leave) => {
    const proxy = await net.proxy({ maxHandshakes: 1 });
    const events = refusals(proxy);
    const holder = await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 0 });
    const waiter = await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 1 });
    const waiterReceived = closed(waiter);
    const manager = net.manager();
    const registering = manager.proxyListen('main', proxy.endpoint);
    await waitFor(() => proxy.stats().handshakesQueued === 2, 'the manager to wait behind the raw connection');

    leave(waiter);
    expect((await waiterReceived).length).toBe(0);
    await waitFor(() => proxy.stats().handshakesQueued === 1, 'the connection to leave the line');

    // The slot frees up: the manager, next in line, gets it, the other connection being gone; its
    // preface and Hello, read ahead while it waited, reach its handshake intact.
    holder.destroy();
    await registering;
    expect(proxy.stats()).toMatchObject({ registrations: 1, handshakesInProgress: 0, handshakesQueued: 0 });
    expect(events).toEqual([]);
  });

  it('closes a connection that waited handshakeTimeout for a slot, as a connection refusal', async () => {
    const proxy = await net.proxy({ maxHandshakes: 1, handshakeTimeout: 1000 });
    const events = refusals(proxy);
    const first = await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 0 });
    const second = await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 1 });
    const third = await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 2 });
    const thirdPort = third.localPort;
    const thirdReceived = closed(third);
    // The first times out in its handshake and the second gets its slot; the third, which would
    // get a slot only when the second times out too, has waited its handshakeTimeout by then.
    expect((await thirdReceived).length).toBe(0);
    const byThird = events.filter((event) => event.address.endsWith(`:${thirdPort}`));
    expect(byThird).toEqual([expect.objectContaining({ kind: 'connection', code: 'ERR_TIMEOUT', reason: expect.stringContaining('waited 1000 ms for one of the proxy\'s 1 handshake slots') })]);
    expect(events.filter((event) => event.kind === 'handshake' && event.code === 'ERR_TIMEOUT').length).toBeGreaterThanOrEqual(1);
    first.destroy();
    second.destroy();
    await waitFor(() => proxy.stats().handshakesInProgress === 0 && proxy.stats().handshakesQueued === 0, 'the slots to free up');
    await net.manager().proxyListen('main', proxy.endpoint);
  });

  it('closes connections past maxQueuedHandshakes at once, with the reason, and keeps serving', async () => {
    const proxy = await net.proxy({ maxHandshakes: 1, maxQueuedHandshakes: 2 });
    const events = refusals(proxy);
    const held = [
      await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 0 }),
      await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 1 }),
      await stalled(proxy, { handshakesInProgress: 1, handshakesQueued: 2 }),
    ];
    const extra = [await socketTo(proxy.port), await socketTo(proxy.port)];
    for (const socket of extra) socket.on('error', () => undefined);
    const received = await Promise.all(extra.map(closed));
    expect(received.map((bytes) => bytes.length)).toEqual([0, 0]);
    expect(events).toEqual([
      expect.objectContaining({ kind: 'connection', code: 'ERR_LIMIT', reason: '2 connections already wait for one of the proxy\'s 1 handshake slots', addressGroup: '127.0.0.1' }),
      expect.objectContaining({ kind: 'connection', code: 'ERR_LIMIT' }),
    ]);
    expect(proxy.stats()).toMatchObject({ connectionsRefused: 2, handshakesInProgress: 1, handshakesQueued: 2 });

    for (const socket of held) socket.destroy();
    await waitFor(() => proxy.stats().handshakesInProgress === 0 && proxy.stats().handshakesQueued === 0, 'the slots to free up');
    await net.manager().proxyListen('main', proxy.endpoint);
    expect(proxy.stats()).toMatchObject({ registrations: 1, handshakesInProgress: 0, handshakesQueued: 0 });
  });

  it('gives no slot to a connection that has sent nothing, so silent ones cannot block the others', async () => {
    const proxy = await net.proxy({ maxHandshakes: 1, handshakeTimeout: 500 });
    const events = refusals(proxy);
    const silent = await Promise.all([socketTo(proxy.port), socketTo(proxy.port), socketTo(proxy.port)]);
    for (const socket of silent) socket.on('error', () => undefined);
    await waitFor(() => proxy.stats().handshakesQueued === 3, 'the silent connections to wait');
    expect(proxy.stats().handshakesInProgress).toBe(0);
    await net.manager().proxyListen('main', proxy.endpoint);
    await Promise.all(silent.map(closed));
    expect(events).toHaveLength(3);
    expect(events.every((event) => event.kind === 'connection' && event.code === 'ERR_TIMEOUT' && event.reason === 'sent nothing within the handshake timeout of 500 ms')).toBe(true);
    expect(proxy.stats()).toMatchObject({ registrations: 1, handshakesInProgress: 0, handshakesQueued: 0 });
  });

  it('refuses maxHandshakes 0, which would answer no connection, and the other limits 0 would make refuse everything', async () => {
    await expect(Proxy.listen({ maxHandshakes: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('maxHandshakes') });
    for (const name of ['maxConnections', 'maxConnectionsPerAddress', 'maxRegistrations', 'maxVcsPerConnection', 'bufferBudget', 'handshakeTimeout', 'maxPayload'] as const) {
      await expect(Proxy.listen({ [name]: 0 }), name).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: `${name} must be a positive integer, got 0` });
    }
  });
});
