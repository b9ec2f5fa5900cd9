import { afterEach, describe, expect, it } from 'vitest';
import { startDelayRelay, type DelayRelay } from '../../bench/lib/delay-relay.js';
import { ReceiveWindow, WINDOW_IDLE_MS } from '../../src/flow-control/receive-window.js';
import { DEFAULT_VC_WINDOW } from '../../src/hop/circuit.js';
import { Endpoint, type Flow } from '../../src/index.js';
import { INITIAL_STREAM_WINDOW } from '../../src/mux/index.js';
import { useNetwork } from '../fixtures.js';
import { delay, digestUntilEnd, waitFor, writeRandom } from '../helpers.js';

const MiB = 1 << 20;

describe('ReceiveWindow', () => {
  it('doubles when a grant falls due within the round trips it allows, up to its maximum', () => {
    const window = new ReceiveWindow(1000, 3000);
    // Half the window taken at once, with a 50 ms round trip: the sender was held back by the window.
    expect(window.beforeGrant(500, 50)).toBe(2000);
    expect(window.beforeGrant(1000, 50)).toBe(3000);
    expect(window.beforeGrant(1500, 50)).toBe(3000);
  });

  it('stays put while the round trip is unknown, and when grants come slower than the path', async () => {
    const window = new ReceiveWindow(1000, 8000);
    expect(window.beforeGrant(500, undefined)).toBe(1000);
    await delay(30);
    // 30 ms for a quarter window on a 1 ms path: the reader or the link is the limit, not the window.
    expect(window.beforeGrant(250, 1)).toBe(1000);
  });

  it('grows only as far as its owner allows', () => {
    let allowed = true;
    const window = new ReceiveWindow(1000, 8000, () => allowed);
    expect(window.beforeGrant(500, 50)).toBe(2000);
    allowed = false;
    expect(window.beforeGrant(1000, 50)).toBe(2000);
  });

  it('refuses a floor above its maximum', () => {
    expect(() => new ReceiveWindow(2000, 1000)).toThrow(/floor/);
  });
});

describe('windows over a long path', () => {
  const net = useNetwork({ checkLeaks: true });
  const relays: DelayRelay[] = [];
  afterEach(async () => {
    for (const relay of relays.splice(0)) await relay.close();
  });

  /** Sends `bytes` (24 MiB) over `flow` while sampling the largest windows the receiving side reached. */
  async function transfer(flow: Flow, accepted: Promise<Flow>, sample: () => number, bytes = 24 * MiB): Promise<{ stream: number; vc: number; other: number }> {
    const receiver = await accepted;
    const peak = { stream: 0, vc: 0, other: 0 };
    const sampler = setInterval(() => {
      peak.stream = Math.max(peak.stream, receiver.receiveWindow);
      peak.vc = Math.max(peak.vc, receiver.conn.receiveWindow);
      peak.other = Math.max(peak.other, sample());
    }, 5);
    const [sent, received] = await Promise.all([writeRandom(flow, bytes), digestUntilEnd(receiver)]);
    clearInterval(sampler);
    expect(received).toEqual({ sha256: sent, bytes });
    receiver.end();
    flow.resume();
    await waitFor(() => flow.closed && receiver.closed, 'both ends of the flow to close');
    // Idle now: every window returns to where it started.
    await waitFor(() => receiver.receiveWindow === INITIAL_STREAM_WINDOW && receiver.conn.receiveWindow === DEFAULT_VC_WINDOW, 'the windows to return to their floor', 3 * WINDOW_IDLE_MS);
    return peak;
  }

  it('grows a flow and its VC past 1 MiB over a 40 ms path, directly, and returns both to the floor when idle', async () => {
    const server = net.manager();
    const listening = Endpoint.parse(await server.listen('127.0.0.1:0'));
    const relay = await startDelayRelay(listening.port, 20);
    relays.push(relay);
    const client = net.manager();
    const flow = await client.dial(new Endpoint('127.0.0.1', relay.port, server.routingId));
    const peak = await transfer(flow, server.accept(), () => 0);
    console.log(`40 ms RTT, direct: the flow's window reached ${(peak.stream / MiB).toFixed(1)} MiB, the VC's ${(peak.vc / MiB).toFixed(1)} MiB`);
    expect(peak.stream).toBeGreaterThan(MiB);
    expect(peak.vc).toBeGreaterThan(MiB);
  });

  it("grows the proxy's windows with the path too, within its budget, and gives the reservation back when idle", async () => {
    const proxy = await net.proxy();
    const toProxy = async (): Promise<Endpoint> => {
      const relay = await startDelayRelay(proxy.port, 10);
      relays.push(relay);
      return new Endpoint('127.0.0.1', relay.port, proxy.routingId);
    };
    const server = net.manager();
    await server.proxyListen('main', (await toProxy()).toString());
    const viaClientPath = await toProxy();
    const client = net.manager();
    const flow = await client.dial(new Endpoint(viaClientPath.host, viaClientPath.port, server.routingId, proxy.routingId));
    const floor = 2 * DEFAULT_VC_WINDOW;
    const peak = await transfer(flow, server.accept(), () => proxy.stats().reservedBytes);
    console.log(`2 x 20 ms RTT hops through a proxy: the flow's window reached ${(peak.stream / MiB).toFixed(1)} MiB, the VC's ${(peak.vc / MiB).toFixed(1)} MiB, the proxy reserved up to ${(peak.other / MiB).toFixed(1)} MiB for the VC`);
    expect(peak.stream).toBeGreaterThan(MiB);
    expect(peak.vc).toBeGreaterThan(MiB);
    expect(peak.other).toBeGreaterThan(floor + MiB);
    expect(proxy.stats().peakQueuedBytes).toBeLessThanOrEqual(peak.other);
    await waitFor(() => proxy.stats().reservedBytes === floor, "the proxy's reservation to return to its floor", 3 * WINDOW_IDLE_MS);
  });
  it('times a flow\'s window by the least round trip, so the queue a transfer builds at a slow link does not grow it', async () => {
    const server = net.manager();
    const listening = Endpoint.parse(await server.listen('127.0.0.1:0'));
    // 5 MiB/s with a queue as deep as the sender fills it: a 256 KiB window alone keeps it busy
    // (the path's round trip is 2 ms), and every round trip taken during the transfer includes it.
    const relay = await startDelayRelay(listening.port, 1, { bytesPerSecond: 5 * MiB });
    relays.push(relay);
    const client = net.manager();
    const flow = await client.dial(new Endpoint('127.0.0.1', relay.port, server.routingId));
    const accepted = server.accept();
    const receiver = await accepted;
    // Round trips from the receiving end, whose answers wait behind the queued data: what the keepalive would see.
    let slowest = 0;
    const pinger = setInterval(() => {
      receiver.conn.ping().then((ms) => (slowest = Math.max(slowest, ms)), () => undefined);
    }, 50);
    // Pings are traffic too: they stop with the transfer, so that the windows can go idle.
    receiver.once('end', () => clearInterval(pinger));
    try {
      const peak = await transfer(flow, Promise.resolve(receiver), () => 0, 6 * MiB);
      console.log(`5 MiB/s link with a deep queue: round trips up to ${slowest.toFixed(0)} ms during the transfer; the flow's window reached ${(peak.stream / MiB).toFixed(2)} MiB`);
      expect(slowest).toBeGreaterThan(20);
      expect(peak.stream).toBeLessThan(MiB);
    } finally {
      clearInterval(pinger);
    }
  });
});
