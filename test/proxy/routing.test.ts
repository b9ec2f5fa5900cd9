import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DATA_HIGH_WATER, HopConnection } from '../../src/hop/connection.js';
import { DEFAULT_MAX_VC_WINDOW } from '../../src/proxy/options.js';
import { Identity } from '../../src/id/identity.js';
import { Link } from '../../src/manager/link.js';
import { Proxy } from '../../src/proxy/proxy.js';
import type { VirtualCircuit } from '../../src/hop/circuit.js';
import { FrameDecoder, FrameType, encodeHeader, payloadOf, decodeReason, type Frame } from '../../src/wire/index.js';
import { activeResources, delay, digestStream, expectNoLeaks, socketTo, waitFor, writeRandom } from '../helpers.js';
import { RawHandshake } from '../hop/raw-hop.js';

const MiB = 1 << 20;

/** A process-side hop link to the proxy, below the Manager: VCs as raw byte streams. */
async function linkTo(proxy: Proxy, identity = Identity.generate(), window = 1 * MiB): Promise<Link> {
  const hop = await HopConnection.establish({ socket: await socketTo(proxy.port), identity, initiator: true, keepAliveInterval: 0 });
  const link = new Link(hop, identity, window, window);
  link.start();
  const openVc = link.openVc.bind(link);
  // Tests here hold VCs without a multiplexer above them; their teardown errors are expected.
  link.openVc = async (...args) => {
    const circuit = await openVc(...args);
    circuit.on('error', () => undefined);
    return circuit;
  };
  return link;
}

describe('proxy routing of VCs', () => {
  let proxy: Proxy;
  let baseline: Record<string, number>;
  const links: Link[] = [];

  beforeEach(async () => {
    baseline = activeResources();
    proxy = await Proxy.listen({ keepAliveInterval: 0 });
  });

  afterEach(async () => {
    for (const link of links.splice(0)) link.close();
    await proxy.close();
    await expectNoLeaks(baseline);
  });

  async function server(identity?: Identity): Promise<{ link: Link; circuits: VirtualCircuit[] }> {
    const link = await linkTo(proxy, identity);
    links.push(link);
    const circuits: VirtualCircuit[] = [];
    link.decide = () => undefined;
    link.on('circuit', (circuit: VirtualCircuit) => {
      circuit.on('error', () => undefined);
      circuits.push(circuit);
    });
    await link.register();
    return { link, circuits };
  }

  it('forwards a VC byte stream by routing id, rewriting VC ids, with every byte intact', async () => {
    const s = await server();
    const client = await linkTo(proxy);
    links.push(client);
    const vc = await client.openVc(s.link.hop.routingId);
    await waitFor(() => s.circuits.length === 1, 'the server to see the VC');
    const [sent, received] = await Promise.all([writeRandom(vc, 32 * MiB), digestStream(s.circuits[0])]);
    expect(received).toEqual({ sha256: sent, bytes: 32 * MiB });
    expect(s.circuits[0].remoteRoutingId.equals(client.hop.routingId)).toBe(true);
    expect(proxy.stats().bytesForwarded).toBe(32 * MiB);
  });

  it('rejects a VC to an unregistered routing id, naming the id and the proxy', async () => {
    const client = await linkTo(proxy);
    links.push(client);
    const nobody = Identity.generate().routingId;
    await expect(client.openVc(nobody)).rejects.toMatchObject({
      code: 'ERR_UNKNOWN_DESTINATION',
      message: `no server with routing id ${nobody} is registered on proxy ${proxy.endpoint}`,
    });
    expect(proxy.stats().vcsRejected).toBe(1);
  });

  it('never lets a sender exceed its credit: a stalled receiver process holds the proxy to the window it granted', async () => {
    const s = await server();
    const client = await linkTo(proxy);
    links.push(client);
    const vc = await client.openVc(s.link.hop.routingId);
    await waitFor(() => s.circuits.length === 1, 'the server to see the VC');
    // The server process stops reading its socket entirely (as if frozen).
    s.link.hop.socket.pause();
    void writeRandom(vc, 64 * MiB, 64 * 1024, false).catch(() => undefined);
    await delay(300);
    const stats = proxy.stats();
    // Forwarded: what the server's 1 MiB window allowed; its socket holds at most the high-water mark and a frame.
    expect(stats.bytesForwarded).toBeLessThanOrEqual(1 * MiB);
    expect(stats.peakConnectionBufferedBytes).toBeLessThanOrEqual(DATA_HIGH_WATER + 64 * 1024);
    // Held: the rest, within the window the proxy granted the client, which its reservation covers.
    expect(stats.queuedBytes).toBeGreaterThan(0);
    expect(stats.peakQueuedBytes).toBeLessThanOrEqual(stats.reservedBytes);
    expect(stats.reservedBytes).toBeLessThanOrEqual(2 * DEFAULT_MAX_VC_WINDOW);
    console.log(`stalled receiver: proxy forwarded ${stats.bytesForwarded} bytes, holds ${stats.queuedBytes} (peak ${stats.peakQueuedBytes}), reserved ${stats.reservedBytes}`);
    vc.destroy();
    s.link.hop.socket.resume();
  });

  it('holds no more than its budgets under a storm of stalled readers, and another client still gets a VC through', async () => {
    const budget = 24 * MiB;
    const perIdentity = 12 * MiB;
    await proxy.close();
    proxy = await Proxy.listen({ keepAliveInterval: 0, bufferBudget: budget, connectionBufferBudget: budget, identityBufferBudget: perIdentity, addressBufferBudget: budget });
    const s = await server();
    // One identity over 8 connections opens VCs until refused; the server never reads any of them.
    const flooder = Identity.generate();
    const stalled: VirtualCircuit[] = [];
    const refusals: string[] = [];
    for (let i = 0; i < 8; i++) {
      const link = await linkTo(proxy, flooder);
      links.push(link);
      for (let j = 0; j < 8; j++) {
        try {
          stalled.push(await link.openVc(s.link.hop.routingId));
        } catch (err) {
          refusals.push((err as { code: string }).code);
        }
      }
    }
    const writers = stalled.map((vc) => writeRandom(vc, 64 * MiB, 64 * 1024, false).catch(() => undefined));
    let peakReserved = 0;
    const sampler = setInterval(() => {
      peakReserved = Math.max(peakReserved, proxy.stats().reservedBytes);
    }, 2);
    await delay(500);
    // Another client is not held up by the flood: its VC opens and carries 16 MiB intact.
    const other = await linkTo(proxy);
    links.push(other);
    const moving = await other.openVc(s.link.hop.routingId);
    await waitFor(() => s.circuits.length === stalled.length + 1, 'the server to see every VC');
    const [sent, received] = await Promise.all([writeRandom(moving, 16 * MiB), digestStream(s.circuits[stalled.length])]);
    clearInterval(sampler);
    const stats = proxy.stats();
    console.log(
      `stalled-reader storm: ${stalled.length} stalled VCs (${refusals.length} refused: ${[...new Set(refusals)].join(', ')}); ` +
        `proxy holds ${(stats.queuedBytes / MiB).toFixed(1)} MiB (peak ${(stats.peakQueuedBytes / MiB).toFixed(1)}), reserved at most ${(peakReserved / MiB).toFixed(1)} MiB of ${budget / MiB} (${perIdentity / MiB} per identity)`,
    );
    expect(received).toEqual({ sha256: sent, bytes: 16 * MiB });
    expect(refusals.length).toBeGreaterThan(0);
    expect(new Set(refusals)).toEqual(new Set(['ERR_LIMIT']));
    expect(stats.queuedBytes).toBeGreaterThan(0);
    expect(stats.peakQueuedBytes).toBeLessThanOrEqual(budget);
    expect(peakReserved).toBeLessThanOrEqual(budget);
    // The flooder's VCs together stay within its own share.
    expect(stats.peakQueuedBytes).toBeLessThanOrEqual(perIdentity + 2 * DEFAULT_MAX_VC_WINDOW);
    for (const vc of [...stalled, moving]) vc.destroy();
    await Promise.all(writers);
  });

  it('keeps a second VC on the same two hop connections moving while the reader of the first is stalled, within the budget', async () => {
    const budget = 8 * MiB;
    await proxy.close();
    proxy = await Proxy.listen({ keepAliveInterval: 0, bufferBudget: budget, connectionBufferBudget: budget });
    const s = await server();
    const client = await linkTo(proxy);
    links.push(client);
    const stalled = await client.openVc(s.link.hop.routingId);
    const moving = await client.openVc(s.link.hop.routingId);
    await waitFor(() => s.circuits.length === 2, 'the server to see both VCs');
    expect(proxy.stats()).toMatchObject({ vcs: 2, connections: 2 });
    // The server process never reads the first VC; its writer pushes 256 MiB into it.
    const stalledWriter = writeRandom(stalled, 256 * MiB, 64 * 1024, false).catch(() => undefined);
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, proxy.stats().bufferedBytes);
    }, 2);
    const [sent, received] = await Promise.all([writeRandom(moving, 64 * MiB), digestStream(s.circuits[1])]);
    clearInterval(sampler);
    expect(received).toEqual({ sha256: sent, bytes: 64 * MiB });
    expect(peak).toBeLessThan(budget);
    expect(proxy.stats().peakConnectionBufferedBytes).toBeLessThan(budget);
    // The stalled VC is held to one window by credit: the server holds it, the proxy does not.
    expect(s.circuits[0].queuedBytes).toBeLessThanOrEqual(1 * MiB);
    stalled.destroy();
    await stalledWriter;
  });

  it('refuses a process that claims a public key it cannot sign for', async () => {
    const victim = Identity.generate();
    const socket = await socketTo(proxy.port);
    const frames: Frame[] = [];
    const decoder = new FrameDecoder({ onPreface: () => undefined, onFrame: (frame) => frames.push(frame) });
    socket.on('data', (chunk: Buffer) => decoder.push(chunk));
    socket.write(new RawHandshake(victim, 'initiator').opening());
    await waitFor(() => frames.length >= 2, "the proxy's hello and proof");
    // Without the victim's private key the best an impostor can send is a signature by another key.
    const forged = Identity.generate().sign(Buffer.from('anything'));
    socket.write(Buffer.concat([encodeHeader(FrameType.Proof, 0, forged.length), forged]));
    await new Promise((resolve) => socket.once('close', resolve));
    const goAway = frames.find((frame) => frame.type === FrameType.GoAway);
    expect(goAway && decodeReason(payloadOf(goAway)).message).toContain(`failed to prove it holds the key for routing id ${victim.routingId}`);
    expect(proxy.stats().registrations).toBe(0);
  });

  it('supersedes the old connection when the same key registers again, telling it why', async () => {
    const identity = Identity.generate();
    const first = await server(identity);
    const second = await server(identity);
    const err = await first.link.hop.closed;
    expect(err).toMatchObject({ code: 'ERR_SUPERSEDED' });
    expect(proxy.stats().registrations).toBe(1);
    const client = await linkTo(proxy);
    links.push(client);
    await client.openVc(identity.routingId);
    await waitFor(() => second.circuits.length === 1, 'the new registration to get the VC');
  });

  it('drops a peer that is not speaking the protocol and keeps serving others', async () => {
    const socket = await socketTo(proxy.port);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    const s = await server();
    const client = await linkTo(proxy);
    links.push(client);
    await client.openVc(s.link.hop.routingId);
    expect(proxy.stats().protocolErrors).toBe(1);
  });
});
