import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HopConnection } from '../../src/hop/connection.js';
import { MAX_VC_WINDOW, type VirtualCircuit } from '../../src/hop/circuit.js';
import { Reason } from '../../src/errors.js';
import { Identity } from '../../src/id/identity.js';
import type { RoutingId } from '../../src/id/routing-id.js';
import { Link } from '../../src/manager/link.js';
import { Proxy } from '../../src/proxy/proxy.js';
import {
  FrameDecoder,
  FrameType,
  decodeReason,
  encodeCredit,
  encodeHeader,
  encodeOpenVc,
  encodePreface,
  OPEN_VC_FIXED_SIZE,
  payloadOf,
  type Frame,
} from '../../src/wire/index.js';
import { socketTo } from '../helpers.js';
import { RawHandshake } from '../hop/raw-hop.js';

const CASES = 10_000;
const CONCURRENCY = 24;
const VC_LIMIT = 8;

/** One hostile connection's script: what it sends once connected (and, for `afterHandshake`, once it proved a key). */
type HostileCase =
  | { kind: 'randomBytes'; bytes: Uint8Array }
  | { kind: 'prefaceThenRandom'; bytes: Uint8Array }
  | { kind: 'dataBeforeSetup'; vci: number; payload: Uint8Array }
  | { kind: 'truncatedFrame'; type: number; announced: number; sent: number }
  | { kind: 'oversizeLength'; length: number }
  | { kind: 'unknownVc'; type: 'data' | 'credit' | 'close'; vci: number }
  | { kind: 'duplicateVc'; vci: number }
  | { kind: 'creditOverflow'; extra: number }
  | { kind: 'openVcFlood'; count: number }
  | { kind: 'randomFrames'; frames: Array<{ type: number; flags: number; vci: number; payload: Uint8Array }> };

const hostileCase: fc.Arbitrary<HostileCase> = fc.oneof(
  fc.record({ kind: fc.constant('randomBytes' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 512 }) }),
  fc.record({ kind: fc.constant('prefaceThenRandom' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 512 }) }),
  fc.record({ kind: fc.constant('dataBeforeSetup' as const), vci: fc.integer({ min: 1, max: 0xffff_ffff }), payload: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({
    kind: fc.constant('truncatedFrame' as const),
    type: fc.constantFrom(FrameType.OpenVc, FrameType.Register, FrameType.Data),
    announced: fc.integer({ min: 70, max: 4096 }),
    sent: fc.integer({ min: 0, max: 69 }),
  }),
  fc.record({ kind: fc.constant('oversizeLength' as const), length: fc.integer({ min: (1 << 20) + 1, max: 0xffff_ffff }) }),
  fc.record({ kind: fc.constant('unknownVc' as const), type: fc.constantFrom('data' as const, 'credit' as const, 'close' as const), vci: fc.integer({ min: 1000, max: 0xffff_fffe }) }),
  fc.record({ kind: fc.constant('duplicateVc' as const), vci: fc.integer({ min: 0, max: 100 }).map((n) => 2 * n + 1) }),
  // Credit may grow a window, up to MAX_VC_WINDOW: the overflow is credit past that, over the 64 KiB window the VC opened with.
  fc.record({ kind: fc.constant('creditOverflow' as const), extra: fc.integer({ min: MAX_VC_WINDOW - 65536 + 1, max: 0x7fff_ffff }) }),
  fc.record({ kind: fc.constant('openVcFlood' as const), count: fc.integer({ min: 2 * VC_LIMIT + 2, max: 6 * VC_LIMIT }) }),
  fc.record({
    kind: fc.constant('randomFrames' as const),
    frames: fc.array(
      fc.record({
        type: fc.integer({ min: 0, max: 0x50 }),
        flags: fc.constantFrom(0, 0, 0, 1),
        vci: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 0xffff_ffff })),
        payload: fc.uint8Array({ maxLength: 80 }),
      }),
      { minLength: 1, maxLength: 12 },
    ),
  }),
);

function frame(type: number, vci: number, payload: Uint8Array = new Uint8Array(0), flags = 0): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt8(type, 0);
  header.writeUInt8(flags, 1);
  header.writeUInt32BE(vci, 4);
  header.writeUInt32BE(payload.length, 8);
  return Buffer.concat([header, payload]);
}

/** A raw client that speaks the handshake by hand, then misbehaves; it records what the proxy sends back. */
class RawPeer {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  private readonly decoder = new FrameDecoder({ onPreface: () => undefined, onFrame: (f) => this.frames.push(f) });

  constructor(port: number) {
    this.socket = connect({ host: '127.0.0.1', port });
    this.socket.on('data', (chunk: Buffer) => {
      try {
        this.decoder.push(chunk);
      } catch {
        // What the proxy sends is not under test here.
      }
    });
    this.socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  async handshake(identity: Identity): Promise<void> {
    const own = new RawHandshake(identity, 'initiator');
    this.socket.write(own.opening());
    await until(() => this.frames.some((f) => f.type === FrameType.Hello) || this.socket.destroyed);
    const hello = this.frames.find((f) => f.type === FrameType.Hello);
    if (!hello) throw new Error('proxy sent no hello');
    this.socket.write(own.proof(payloadOf(hello)));
    await until(() => this.frames.some((f) => f.type === FrameType.Proof) || this.socket.destroyed);
  }

  goAwayReason(): number | undefined {
    const goAway = this.frames.find((f) => f.type === FrameType.GoAway);
    return goAway ? decodeReason(payloadOf(goAway)).reason : undefined;
  }
}

async function until(condition: () => boolean, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

async function linkTo(proxy: Proxy): Promise<Link> {
  const identity = Identity.generate();
  const hop = await HopConnection.establish({ socket: await socketTo(proxy.port), identity, initiator: true, keepAliveInterval: 0 });
  const link = new Link(hop, identity, 256 * 1024, 256 * 1024);
  link.start();
  return link;
}

/** Runs one case; resolves to whether the proxy answered the offence with a protocol go-away and closed. */
async function runCase(proxy: Proxy, sink: RoutingId, testCase: HostileCase): Promise<{ closed: boolean; reason: number | undefined }> {
  const peer = new RawPeer(proxy.port);
  await new Promise<void>((resolve) => {
    peer.socket.once('connect', resolve);
    peer.socket.once('close', resolve);
  });
  const identity = Identity.generate();
  const send = (bytes: Uint8Array): void => {
    if (!peer.socket.destroyed) peer.socket.write(bytes);
  };
  switch (testCase.kind) {
    case 'randomBytes':
      // A valid preface by chance would make this a different case; force the first byte off "R".
      send(Buffer.concat([Buffer.from([testCase.bytes[0] === 0x52 ? 0x53 : testCase.bytes[0]]), testCase.bytes.subarray(1), Buffer.alloc(12)]));
      break;
    case 'prefaceThenRandom':
      send(Buffer.concat([encodePreface(), Buffer.from([0xff]), testCase.bytes, Buffer.alloc(16)]));
      break;
    case 'dataBeforeSetup':
      send(Buffer.concat([encodePreface(), frame(FrameType.Data, testCase.vci, testCase.payload)]));
      break;
    default: {
      await peer.handshake(identity);
      switch (testCase.kind) {
        case 'truncatedFrame':
          // Within the type's length limits, so that the cut (not the header) is what the proxy meets.
          const announced = testCase.type === FrameType.OpenVc ? OPEN_VC_FIXED_SIZE + 32 : testCase.type === FrameType.Register ? 32 : testCase.announced;
          const sent = Math.min(testCase.sent, announced - 1);
          send(Buffer.concat([encodeHeader(testCase.type, testCase.type === FrameType.Register ? 0 : 1, announced), randomBytes(sent)]));
          peer.socket.end();
          break;
        case 'oversizeLength': {
          const header = Buffer.alloc(12);
          header.writeUInt8(FrameType.Data, 0);
          header.writeUInt32BE(1, 4);
          header.writeUInt32BE(testCase.length, 8);
          send(header);
          break;
        }
        case 'unknownVc': {
          const type = { data: FrameType.Data, credit: FrameType.Credit, close: FrameType.CloseVc }[testCase.type];
          const payload = testCase.type === 'data' ? randomBytes(16) : testCase.type === 'credit' ? encodeCredit(100) : Buffer.from([0, 0]);
          send(frame(type, (testCase.vci | 1) >>> 0, payload));
          break;
        }
        case 'duplicateVc': {
          const open = encodeOpenVc({ dst: sink, src: identity.routingId, srcPublicKey: identity.publicKey, window: 65536 });
          send(Buffer.concat([frame(FrameType.OpenVc, testCase.vci, open), frame(FrameType.OpenVc, testCase.vci, open)]));
          break;
        }
        case 'creditOverflow': {
          const open = encodeOpenVc({ dst: sink, src: identity.routingId, srcPublicKey: identity.publicKey, window: 65536 });
          send(frame(FrameType.OpenVc, 1, open));
          await until(() => peer.frames.some((f) => f.type === FrameType.VcAccepted || f.type === FrameType.VcRejected) || peer.socket.destroyed);
          send(frame(FrameType.Credit, 1, encodeCredit(testCase.extra)));
          break;
        }
        case 'openVcFlood': {
          const open = encodeOpenVc({ dst: sink, src: identity.routingId, srcPublicKey: identity.publicKey, window: 65536 });
          send(Buffer.concat(Array.from({ length: testCase.count }, (_, i) => frame(FrameType.OpenVc, 2 * i + 1, open))));
          break;
        }
        case 'randomFrames':
          send(Buffer.concat(testCase.frames.map((f) => frame(f.type, f.vci, f.payload, f.flags))));
          // A random sequence may be valid; a truncated trailing frame makes every sequence end in an offence.
          send(encodeHeader(FrameType.Data, 1, 100));
          peer.socket.end();
          break;
      }
    }
  }
  const closed = await Promise.race([peer.closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
  peer.socket.destroy();
  return { closed, reason: peer.goAwayReason() };
}

describe('hostile input against a live proxy', () => {
  let proxy: Proxy;
  let server: Link;
  let sink: Link;
  let client: Link;

  beforeAll(async () => {
    proxy = await Proxy.listen({ keepAliveInterval: 0, maxVcsPerConnection: VC_LIMIT, handshakeTimeout: 3000, maxConnectionsPerAddress: 10_000 });
    server = await linkTo(proxy);
    sink = await linkTo(proxy);
    for (const link of [server, sink]) {
      link.decide = () => undefined;
      link.on('circuit', (circuit: VirtualCircuit) => {
        circuit.on('error', () => undefined);
        circuit.resume();
      });
      await link.register();
    }
    client = await linkTo(proxy);
  });

  afterAll(async () => {
    for (const link of [server, sink, client]) link.close();
    await proxy.close();
  });

  it(`answers ${CASES} seeded hostile connections with a protocol error and a close, never throws, returns to its baseline, and keeps a good client transferring`, async () => {
    const cases = fc.sample(hostileCase, { numRuns: CASES, seed: 20261122 });
    const baselineHeap = heapAfterGc();
    const statsBefore = proxy.stats();

    // The well-behaved client streams through the proxy for the whole run.
    const circuit = await client.openVc(server.hop.routingId);
    circuit.on('error', () => undefined);
    let sent = 0;
    let stop = false;
    const chunk = randomBytes(16 * 1024);
    const pump = (async () => {
      while (!stop) {
        if (!circuit.write(chunk)) await new Promise((resolve) => circuit.once('drain', resolve));
        sent += chunk.length;
      }
    })();
    const progress: number[] = [];

    let offenders = 0;
    const failures: Array<{ testCase: HostileCase; closed: boolean; reason: number | undefined }> = [];
    for (let i = 0; i < cases.length; i += CONCURRENCY) {
      const batch = cases.slice(i, i + CONCURRENCY);
      const results = await Promise.all(batch.map((testCase) => runCase(proxy, sink.hop.routingId, testCase)));
      results.forEach((result, j) => {
        offenders++;
        const testCase = batch[j];
        // A random sequence that happens to contain a well-formed GoAway is a peer leaving, and is let go as one.
        const saidGoAway = testCase.kind === 'randomFrames' && testCase.frames.some((f) => f.type === FrameType.GoAway);
        const ok = result.closed && (result.reason === Reason.Protocol || (saidGoAway && result.reason === Reason.GoingAway));
        if (!ok) failures.push({ testCase, ...result });
      });
      if (i % 1000 < CONCURRENCY) progress.push(sent);
    }
    stop = true;
    await pump;

    expect(offenders).toBe(CASES);
    expect(failures.slice(0, 3)).toEqual([]);
    // Each tenth of the run saw the good transfer move forward.
    for (let k = 1; k < progress.length; k++) expect(progress[k]).toBeGreaterThan(progress[k - 1]);
    const stats = proxy.stats();
    expect(stats.protocolErrors - statsBefore.protocolErrors).toBeGreaterThan(CASES * 0.9);
    await until(() => proxy.stats().connections === 3, 10_000);
    expect(proxy.stats().vcs).toBe(1);
    // What the good VC holds (its windows grow with the transfer, up to 16 MiB in the proxy's
    // queue) is not what the offenders left behind: close it before weighing the heap.
    circuit.destroy();
    await until(() => proxy.stats().vcs === 0 && proxy.stats().queuedBytes === 0, 10_000);
    // 10,000 offenders: a leak of even 4 KiB each would be 40 MiB. Below that, what a GC leaves
    // varies from run to run (compiled code, caches): 19 MB was seen once in a fresh-clone run.
    const heapGrowth = heapAfterGc() - baselineHeap;
    expect(heapGrowth).toBeLessThan(32 << 20);
  });

  it('drops a peer that keeps sending pings but never reads the replies, before their queue outgrows its budget', async () => {
    const budget = 1 << 20;
    const strict = await Proxy.listen({ keepAliveInterval: 0, connectionBufferBudget: budget });
    try {
      const peer = new RawPeer(strict.port);
      await peer.handshake(Identity.generate());
      peer.socket.pause();
      const ping = frame(FrameType.Ping, 0, Buffer.alloc(8));
      const burst = Buffer.concat(Array.from({ length: 10_000 }, () => ping));
      let sent = 0;
      let peak = 0;
      while (!peer.socket.destroyed && sent < 64 << 20) {
        if (!peer.socket.write(burst)) await new Promise((resolve) => peer.socket.once('drain', resolve).once('close', resolve));
        sent += burst.length;
        peak = Math.max(peak, strict.stats().bufferedBytes);
      }
      await until(() => strict.stats().connections === 0);
      expect(sent).toBeLessThan(64 << 20);
      expect(peak).toBeLessThanOrEqual(budget + (1 << 20) + burst.length);
      peer.socket.destroy();
    } finally {
      await strict.close();
    }
  });

  it('drops 2,000 silent connections after the handshake timeout while serving a normal client', async () => {
    const silentProxy = await Proxy.listen({ keepAliveInterval: 0, handshakeTimeout: 1500, maxConnectionsPerAddress: 5000 });
    try {
      // Silent: they read what the proxy sends but never answer.
      const silent: Array<{ socket: Socket; lifetime: Promise<number> }> = [];
      for (let batch = 0; batch < 10; batch++) {
        silent.push(...(await Promise.all(Array.from({ length: 200 }, async () => {
          const socket = await socketTo(silentProxy.port);
          const connectedAt = Date.now();
          socket.on('error', () => undefined);
          socket.resume();
          const lifetime = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - connectedAt)));
          return { socket, lifetime };
        }))));
      }
      const openedAt = Date.now();

      const good = await linkTo(silentProxy);
      good.decide = () => undefined;
      const goodCircuits: VirtualCircuit[] = [];
      good.on('circuit', (c: VirtualCircuit) => {
        c.on('error', () => undefined);
        goodCircuits.push(c);
      });
      await good.register();
      const caller = await linkTo(silentProxy);
      const vc = await caller.openVc(good.hop.routingId);
      vc.on('error', () => undefined);
      vc.end(Buffer.alloc(1 << 20, 7));
      await until(() => goodCircuits.length === 1);
      let got = 0;
      for await (const part of goodCircuits[0]) got += (part as Buffer).length;
      expect(got).toBe(1 << 20);
      // Served while all 2,000 were still hanging in their handshakes.
      expect(Date.now() - openedAt).toBeLessThan(1000);

      const lifetimes = await Promise.all(silent.map((s) => s.lifetime));
      expect(Math.min(...lifetimes)).toBeGreaterThanOrEqual(1400);
      expect(Math.max(...lifetimes)).toBeLessThan(6000);
      expect(silentProxy.stats().connectionsRefused).toBe(2000);
      expect(silentProxy.stats().connections).toBe(2);
      good.close();
      caller.close();
    } finally {
      await silentProxy.close();
    }
  });
});

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}
