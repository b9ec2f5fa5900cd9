import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { HopConnection } from '../../src/hop/connection.js';
import { Endpoint } from '../../src/id/endpoint.js';
import { Identity } from '../../src/id/identity.js';
import { Link } from '../../src/manager/link.js';
import { queryProxyStatus } from '../../src/proxy/status-client.js';
import { FrameDecoder, FrameType, HELLO_SIZE, decodeReason, encodePreface, payloadOf, type Frame } from '../../src/wire/index.js';
import { serveEcho, useNetwork } from '../fixtures.js';
import { readAll, socketTo, startRelay, waitFor } from '../helpers.js';
import { RawHandshake, frame } from '../hop/raw-hop.js';

const MiB = 1 << 20;
/** A version-1 Hello (64 bytes: key and nonce), written by hand: this build cannot encode one. */
const V1_HELLO = Buffer.concat([Buffer.from('010000000000000000000040', 'hex'), Buffer.alloc(64, 7)]);

/** Collects the frames a hop peer sends (after its preface), for peers driven by hand. */
function frameLog(socket: Socket): Frame[] {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder({ onPreface: () => undefined, onFrame: (f) => frames.push({ ...f, parts: [Buffer.from(payloadOf(f))] }) });
  socket.on('data', (chunk: Buffer) => {
    try {
      decoder.push(chunk);
    } catch {
      // What the peer sends after a violation is not under test.
    }
  });
  socket.on('error', () => undefined);
  return frames;
}

function goAwayMessage(frames: Frame[]): string | undefined {
  const goAway = frames.find((f) => f.type === FrameType.GoAway);
  return goAway && decodeReason(payloadOf(goAway)).message;
}

/** A process-side link below the Manager, authenticated as `identity`. */
async function rawLink(port: number, identity: Identity, window = 1 * MiB): Promise<Link> {
  const hop = await HopConnection.establish({ socket: await socketTo(port), identity, initiator: true, keepAliveInterval: 0 });
  const link = new Link(hop, identity, window, window);
  link.start();
  return link;
}

describe('hop handshake v2 against a live proxy', () => {
  const net = useNetwork();

  it('refuses a proof recorded from a handshake with another proxy, and a proof relayed live from one', async () => {
    const p1 = await net.proxy();
    const p2 = await net.proxy();
    const victim = Identity.generate();

    // Recorded: the victim's opening and proof, as sent to P1, replayed to P2.
    const sent: Buffer[] = [];
    const recorder = await startRelay(p1.port, { tap: (direction, chunk) => (direction === 'toTarget' && sent.push(Buffer.from(chunk)), chunk) });
    net.defer(() => recorder.close());
    const honest = net.manager({ identity: victim });
    await honest.proxyListen('p1', new Endpoint('127.0.0.1', recorder.port, p1.routingId));
    const recorded = Buffer.concat(sent);
    const replay = await socketTo(p2.port);
    const replayed = frameLog(replay);
    replay.write(recorded.subarray(0, 8 + 12 + HELLO_SIZE));
    await waitFor(() => replayed.some((f) => f.type === FrameType.Proof), "P2's hello and proof");
    replay.write(recorded.subarray(8 + 12 + HELLO_SIZE, 8 + 12 + HELLO_SIZE + 12 + 64));
    await once(replay, 'close');
    expect(goAwayMessage(replayed)).toContain(`failed to prove it holds the key for routing id ${victim.routingId}`);

    // Live: a peer the victim connects to (without pinning it) forwards the victim's handshake to P2.
    const relayer = Identity.generate();
    const mitm = createServer((fromVictim) => {
      fromVictim.on('error', () => undefined);
      const toP2 = connect(p2.port, '127.0.0.1');
      const fromP2 = frameLog(toP2);
      const own = new RawHandshake(relayer, 'responder');
      let buffered = Buffer.alloc(0);
      let stage = 0;
      fromVictim.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (stage === 0 && buffered.length >= 8 + 12 + HELLO_SIZE) {
          stage = 1;
          // The victim's Hello goes to P2; the victim gets the relayer's own, properly proven.
          toP2.write(buffered.subarray(0, 8 + 12 + HELLO_SIZE));
          fromVictim.write(Buffer.concat([encodePreface(), frame(FrameType.Hello, 0, own.hello), own.proof(buffered.subarray(8 + 12, 8 + 12 + HELLO_SIZE))]));
          buffered = buffered.subarray(8 + 12 + HELLO_SIZE);
        }
        if (stage === 1 && buffered.length >= 12 + 64) {
          stage = 2;
          toP2.write(buffered.subarray(0, 12 + 64));
          void once(toP2, 'close').then(() => {
            liveRefusal.resolve(goAwayMessage(fromP2));
            fromVictim.destroy();
          });
        }
      });
    });
    let resolveRefusal!: (message: string | undefined) => void;
    const liveRefusal = { promise: new Promise<string | undefined>((resolve) => (resolveRefusal = resolve)), resolve: (m: string | undefined) => resolveRefusal(m) };
    await new Promise<void>((resolve) => mitm.listen(0, '127.0.0.1', resolve));
    net.defer(() => new Promise((resolve) => mitm.close(resolve)));
    const fooled = net.manager({ identity: victim });
    const port = (mitm.address() as { port: number }).port;
    void fooled.proxyListen('mitm', `127.0.0.1:${port}`, { allowUnpinnedProxy: true }).catch(() => undefined);
    expect(await liveRefusal.promise).toContain(`failed to prove it holds the key for routing id ${victim.routingId}`);
    expect(p2.stats().registrations).toBe(0);
  });

  it('shows a recording relay none of the registration, dial and status tokens, and never hands the dial token to the server', async () => {
    const tokens = { registrationToken: 'registration-9f8e7d6c', dialToken: 'dial-1a2b3c4d5e', statusToken: 'status-77aa88bb' };
    const proxy = await net.proxy(tokens);
    const recorded: Buffer[] = [];
    const toServer: Buffer[] = [];
    const serverRelay = await startRelay(proxy.port, {
      tap: (direction, chunk) => {
        recorded.push(Buffer.from(chunk));
        if (direction === 'fromTarget') toServer.push(Buffer.from(chunk));
        return chunk;
      },
    });
    const clientRelay = await startRelay(proxy.port, { tap: (_, chunk) => (recorded.push(Buffer.from(chunk)), chunk) });
    net.defer(() => serverRelay.close());
    net.defer(() => clientRelay.close());

    const server = net.manager();
    await server.proxyListen('main', new Endpoint('127.0.0.1', serverRelay.port, proxy.routingId), { token: tokens.registrationToken });
    serveEcho(server);
    const client = net.manager();
    const flow = await client.dial(new Endpoint('127.0.0.1', clientRelay.port, server.routingId, proxy.routingId), { token: tokens.dialToken });
    flow.end('ping');
    expect((await readAll(flow)).toString()).toBe('ping');
    const status = await queryProxyStatus(new Endpoint('127.0.0.1', clientRelay.port, proxy.routingId), { token: tokens.statusToken });
    expect(status.servers.map((s) => s.routingId)).toEqual([server.routingId.toString()]);

    const wire = Buffer.concat(recorded);
    expect(wire.length).toBeGreaterThan(1000);
    for (const token of Object.values(tokens)) expect(wire.includes(Buffer.from(token))).toBe(false);
    // What reached the server: OpenVc frames of the fixed 68 bytes, with no token MAC after them.
    const opens: Frame[] = [];
    new FrameDecoder({ onPreface: () => undefined, onFrame: (f) => f.type === FrameType.OpenVc && opens.push(f) }).push(Buffer.concat(toServer));
    expect(opens.map((f) => f.length)).toEqual([68]);
  });

  it('refuses status without the status token when a token is set, and keeps status off when only other tokens are', async () => {
    const guarded = await net.proxy({ registrationToken: 'r', statusToken: 'the-status-token' });
    await expect(queryProxyStatus(guarded.endpoint)).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED', message: expect.stringContaining('status token') });
    await expect(queryProxyStatus(guarded.endpoint, { token: 'r' })).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect((await queryProxyStatus(guarded.endpoint, { token: 'the-status-token' })).routingId).toBe(guarded.routingId.toString());
    const dialOnly = await net.proxy({ dialToken: 'd' });
    await expect(queryProxyStatus(dialOnly.endpoint, { token: 'd' })).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED', message: expect.stringContaining('status is off') });
    const open = await net.proxy();
    expect((await queryProxyStatus(open.endpoint)).connections).toBeGreaterThanOrEqual(1);
  });

  it('tells a version-1 peer "unsupported protocol version" at once, and a client meeting a version-1 proxy says so too', async () => {
    const proxy = await net.proxy();
    const old = await socketTo(proxy.port);
    const frames = frameLog(old);
    const startedAt = Date.now();
    old.write(Buffer.concat([Buffer.from('5249445000010001', 'hex'), V1_HELLO]));
    await once(old, 'close');
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(goAwayMessage(frames)).toBe('unsupported protocol version: the peer speaks version 1, this side speaks version 2');

    const accepted: Socket[] = [];
    const oldProxy = createServer((socket) => {
      accepted.push(socket);
      socket.on('error', () => undefined);
      socket.end(Buffer.concat([Buffer.from('5249445000010001', 'hex'), V1_HELLO]));
    });
    await new Promise<void>((resolve) => oldProxy.listen(0, '127.0.0.1', resolve));
    net.defer(() => {
      for (const socket of accepted) socket.destroy();
      return new Promise((resolve) => oldProxy.close(resolve));
    });
    const client = net.manager();
    const port = (oldProxy.address() as { port: number }).port;
    await expect(client.dial(`127.0.0.1:${port}`)).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED_VERSION', message: expect.stringContaining('unsupported protocol version') });
  });
});

describe('resource bounds against a live proxy', () => {
  const net = useNetwork();

  it('one peer opening VCs without bound, over many connections, cannot make a second peer dial fail; unanswered VCs time out', async () => {
    // Each VC reserves the proxy's two initial windows (2 x 256 KiB): 4 fit a connection's budget, 8 the identity's.
    const proxy = await net.proxy({
      bufferBudget: 16 * MiB,
      connectionBufferBudget: 2 * MiB,
      identityBufferBudget: 4 * MiB,
      addressBufferBudget: 12 * MiB,
      vcOpenTimeout: 500,
    });
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    // A registered destination that never answers: every VC to it stays pending, holding its reservation.
    const sinkIdentity = Identity.generate();
    const sink = await HopConnection.establish({ socket: await socketTo(proxy.port), identity: sinkIdentity, initiator: true, keepAliveInterval: 0 });
    sink.start(() => undefined);
    sink.send(FrameType.Register, 0);
    await waitFor(() => proxy.stats().registrations === 2, 'the sink to register');

    const attacker = Identity.generate();
    const refusals: string[] = [];
    const links = await Promise.all(Array.from({ length: 6 }, () => rawLink(proxy.port, attacker)));
    for (const link of links) {
      for (;;) {
        const outcome = await Promise.race([
          link.openVc(sinkIdentity.routingId).then(
            () => 'accepted',
            (err: { code: string; message: string }) => `${err.code}: ${err.message}`,
          ),
          new Promise<string>((resolve) => setTimeout(() => resolve('pending'), 20)),
        ]);
        if (outcome === 'pending') continue;
        refusals.push(outcome);
        break;
      }
    }
    expect(refusals.every((r) => r.startsWith('ERR_LIMIT'))).toBe(true);
    expect(refusals.some((r) => r.includes('from this routing id'))).toBe(true);
    console.log(`VC flood from one routing id over ${links.length} connections: reserved ${(proxy.stats().reservedBytes / MiB).toFixed(1)} MiB of the 16 MiB budget; refusals: ${[...new Set(refusals.map((r) => r.split(':')[0] + ' ' + (r.match(/from this (\w[\w ]*)$/)?.[1] ?? '')))].join(', ')}`);
    expect(proxy.stats().reservedBytes).toBeLessThanOrEqual(4 * MiB);

    const client = net.manager();
    const flow = await client.dial(server.status().endpoints[0]);
    flow.end('still served');
    expect((await readAll(flow)).toString()).toBe('still served');

    // Unanswered VCs are refused after the open timeout and give their reservations back.
    await waitFor(() => proxy.stats().reservedBytes <= 2 * 256 * 1024, 'pending VCs to time out', 5000);
    for (const link of links) link.close();
    sink.destroy();
  });

  it('cuts off a peer that floods pings and never reads, with bounded memory, in a proxy and in a listening Manager', async () => {
    const proxy = await net.proxy();
    const listener = net.manager();
    const direct = Endpoint.parse(await listener.listen('127.0.0.1:0'));
    serveEcho(listener);
    const pings = Buffer.concat(Array.from({ length: 50_000 }, (_, i) => frame(FrameType.Ping, 0, Buffer.alloc(8, i))));
    for (const port of [proxy.port, direct.port]) {
      const hop = await HopConnection.establish({ socket: await socketTo(port), identity: Identity.generate(), initiator: true, keepAliveInterval: 0 });
      hop.start(() => undefined);
      // The flooder stops reading: every Pong it is owed piles up on the other side.
      hop.socket.pause();
      const before = process.memoryUsage().arrayBuffers;
      let sent = 0;
      while (!hop.socket.destroyed && sent < 400 * MiB) {
        // The write that meets the reset rejects: that is the cut-off this test waits for.
        if (!hop.socket.write(pings)) await Promise.race([once(hop.socket, 'drain'), once(hop.socket, 'close')]).catch(() => undefined);
        sent += pings.length;
      }
      await waitFor(() => hop.socket.destroyed || hop.socket.readableEnded, 'the flooder to be cut off', 10_000);
      expect(sent).toBeLessThan(400 * MiB);
      hop.socket.destroy();
      global.gc?.();
      const grown = process.memoryUsage().arrayBuffers - before;
      console.log(`ping flood against ${port === proxy.port ? 'the proxy' : 'a listening Manager'}: cut off after ${(sent / MiB).toFixed(1)} MiB of pings; arrayBuffers ${(grown / MiB).toFixed(1)} MiB above the start`);
      expect(grown).toBeLessThan(64 * MiB);
    }
    expect(proxy.stats().connections).toBe(0);
    const flow = await net.manager().dial(direct);
    flow.end('after the flood');
    expect((await readAll(flow)).toString()).toBe('after the flood');
  });
});
