import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Endpoint, Manager, Proxy, type Flow, type RidproxyError } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';
import { FrameDecoder, FrameType, encodeHeader, encodeVcAccepted, type Frame } from '../../src/wire/index.js';
import { readAll, startRelay, waitFor, type Direction, type Tap } from '../helpers.js';

const MiB = 1 << 20;

describe('end-to-end security of VCs through an untrusted proxy', () => {
  const net = useNetwork();

  /** Registers `server` on the proxy through a relay, so every byte between them passes `tap`. */
  async function registerVia(proxy: Proxy, server: Manager, tap?: Tap): Promise<Endpoint> {
    const relay = await startRelay(proxy.port, { tap });
    net.defer(() => relay.close());
    await server.proxyListen('main', new Endpoint('127.0.0.1', relay.port, proxy.routingId));
    return new Endpoint(proxy.host, proxy.port, server.routingId, proxy.routingId);
  }

  it('shows a recording proxy none of a known 1 MiB plaintext', async () => {
    const proxy = await net.proxy();
    const recorded: Buffer[] = [];
    const record = (_: Direction, chunk: Buffer): Buffer => {
      recorded.push(Buffer.from(chunk));
      return chunk;
    };
    const server = net.manager();
    const endpoint = await registerVia(proxy, server, record);
    void (async () => {
      for await (const flow of server) flow.pipe(flow).on('error', () => undefined);
    })();
    // The client's own connection to the proxy is recorded too.
    const clientRelay = await startRelay(proxy.port, { tap: record });
    net.defer(() => clientRelay.close());
    const client = net.manager();
    const pattern = Buffer.alloc(MiB);
    for (let i = 0; i < pattern.length; i += 64) pattern.write(`ridproxy-known-plaintext-${String(i).padStart(8, '0')}-`.padEnd(64, '#'), i, 'latin1');
    const flow = await client.dial(new Endpoint('127.0.0.1', clientRelay.port, server.routingId, proxy.routingId));
    flow.end(pattern);
    const echoed = await readAll(flow);
    expect(echoed.equals(pattern)).toBe(true);

    const wire = Buffer.concat(recorded);
    expect(wire.length).toBeGreaterThan(4 * MiB);
    // Any 64-byte window of the plaintext would contain one of these markers.
    expect(wire.indexOf('ridproxy-known-plaintext')).toBe(-1);
    expect(wire.indexOf(pattern.subarray(MiB / 2, MiB / 2 + 64))).toBe(-1);
    void endpoint;
  });

  it('fails the flow with an integrity error when a proxy flips one payload bit, delivering no corrupted byte', async () => {
    const proxy = await net.proxy();
    // A tampering hop: decodes the proxy-to-server stream, flips one bit in a Data payload well after the handshakes.
    let forwardedData = 0;
    let flipped = false;
    const frames: Buffer[] = [];
    const decoder = new FrameDecoder({
      onPreface: () => undefined,
      onFrame: (frame: Frame) => {
        const payload = Buffer.concat(frame.parts);
        if (frame.type === FrameType.Data) {
          forwardedData += payload.length;
          if (!flipped && forwardedData > 256 * 1024 && payload.length > 100) {
            payload[50] ^= 0x01;
            flipped = true;
          }
        }
        frames.push(encodeHeader(frame.type, frame.vci, payload.length), payload);
      },
    });
    let prefaceSeen = false;
    const tamper = (direction: Direction, chunk: Buffer): Buffer => {
      if (direction === 'toTarget') return chunk;
      let input = chunk;
      if (!prefaceSeen) {
        // The proxy's preface goes through untouched; the decoder still needs to see it.
        prefaceSeen = true;
        frames.push(chunk.subarray(0, 8));
      }
      decoder.push(input);
      input = Buffer.concat(frames.splice(0));
      return input;
    };
    const server = net.manager();
    const endpoint = await registerVia(proxy, server, tamper);
    const sent = randomBytes(4 * MiB);
    const delivered: Buffer[] = [];
    const serverError = new Promise<RidproxyError>((resolve) => {
      void (async () => {
        for await (const flow of server) {
          flow.on('data', (chunk: Buffer) => delivered.push(chunk));
          flow.on('error', (err) => resolve(err as RidproxyError));
        }
      })();
    });
    const client = net.manager();
    const flow: Flow = await client.dial(endpoint);
    flow.on('error', () => undefined);
    flow.write(sent);
    const err = await serverError;
    expect(flipped).toBe(true);
    expect(err).toMatchObject({ name: 'IntegrityError', code: 'ERR_INTEGRITY' });
    const got = Buffer.concat(delivered);
    expect(got.length).toBeLessThan(sent.length);
    expect(got.equals(sent.subarray(0, got.length))).toBe(true);
  });

  it('fails the dial with an authentication error when the proxy routes it to a process with another key', async () => {
    const proxy = await net.proxy();
    const victim = net.manager();
    await victim.proxyListen('main', proxy.endpoint);
    const impostor = net.manager();
    await impostor.proxyListen('main', proxy.endpoint);
    // The impostor accepts VCs for any routing id, as a compromised process would.
    (impostor as unknown as { decideVc(): undefined }).decideVc = () => undefined;
    const client = net.manager();
    await client.dial(impostor.status().endpoints[0]).then((f) => f.destroy());
    // The proxy lies twice: it routes the victim's RID to the impostor, and vouches for the victim's key.
    const internals = proxy as unknown as {
      registry: { routes: Map<string, unknown> };
      connections: Set<{ hop: { peerRoutingId: { equals(x: unknown): boolean }; send: (...args: unknown[]) => void } }>;
    };
    const routes = internals.registry.routes;
    routes.set(victim.routingId.toString(), routes.get(impostor.routingId.toString()));
    const clientConn = [...internals.connections].find((c) => c.hop.peerRoutingId.equals(client.routingId))!;
    const send = clientConn.hop.send.bind(clientConn.hop);
    clientConn.hop.send = (type: unknown, vci: unknown, payload: unknown) => {
      if (type === FrameType.VcAccepted) return send(type, vci, encodeVcAccepted(256 * 1024, victim.identity.publicKey));
      return send(type, vci, payload);
    };
    const err = await client.dial(victim.status().endpoints[0]).catch((e: unknown) => e as RidproxyError);
    expect(err).toMatchObject({ code: 'ERR_AUTHENTICATION' });
    expect((err as Error).message).toContain(victim.routingId.toString());
    expect((err as Error).message).toContain(impostor.routingId.toString());
  });

  it('refuses a VC through the acceptor authorize callback, with the typed error on both ends', async () => {
    const proxy = await net.proxy();
    const allowed = net.manager();
    const server = net.manager({ authorize: (peer) => peer.routingId.equals(allowed.routingId) });
    await server.proxyListen('main', proxy.endpoint);
    void (async () => {
      for await (const flow of server) await flow.writeMsgAndClose(Buffer.from('welcome'));
    })();
    const serverSide = new Promise<RidproxyError>((resolve) => server.once('vcError', resolve));
    const stranger = net.manager();
    const err = await stranger.dial(server.status().endpoints[0]).catch((e: unknown) => e as RidproxyError);
    expect(err).toMatchObject({ name: 'UnauthorizedError', code: 'ERR_UNAUTHORIZED' });
    expect(await serverSide).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect((await serverSide).message).toContain(stranger.routingId.toString());

    const flow = await allowed.dial(server.status().endpoints[0]);
    expect((await flow.readMsg()).toString()).toBe('welcome');
  });

  it('refuses a VC through the dialer authorize callback, with the typed error on both ends', async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    const serverSide = new Promise<RidproxyError>((resolve) => server.once('vcError', resolve));
    const client = net.manager();
    const expected = net.manager().routingId;
    const err = await client.dial(server.status().endpoints[0], { authorize: (peer) => peer.routingId.equals(expected) }).catch((e: unknown) => e as RidproxyError);
    expect(err).toMatchObject({ name: 'UnauthorizedError', code: 'ERR_UNAUTHORIZED' });
    expect(await serverSide).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    await waitFor(() => proxy.stats().vcs === 0, 'the refused VC to close');
  });

  it("checks a dial's authorize against a reused VC too, refusing with UnauthorizedError", async () => {
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    const client = net.manager();
    const endpoint = server.status().endpoints[0];
    await client.dial(endpoint);
    const err = await client.dial(endpoint, { authorize: () => false }).catch((e: unknown) => e as RidproxyError);
    expect(err).toMatchObject({ name: 'UnauthorizedError', code: 'ERR_UNAUTHORIZED', message: `refused peer ${server.routingId}: authorize returned false` });
    expect(proxy.stats().vcs).toBe(1);
  });

  it('authenticates direct connections the same way', async () => {
    const server = net.manager();
    const endpoint = Endpoint.parse(await server.listen('127.0.0.1:0'));
    void (async () => {
      for await (const flow of server) await flow.writeMsgAndClose(flow.remotePublicKey);
    })();
    const client = net.manager();
    const flow = await client.dial(endpoint);
    expect(flow.remotePublicKey.equals(server.identity.publicKey)).toBe(true);
    expect((await flow.readMsg()).equals(client.identity.publicKey)).toBe(true);
    const wrong = endpoint.withRoutingId(net.manager().routingId);
    const other = net.manager();
    // The hop pins the process at the address to the routing id dialed: refused before any VC.
    await expect(other.dial(wrong)).rejects.toMatchObject({ code: 'ERR_AUTHENTICATION', message: expect.stringContaining(`presents routing id ${server.routingId}`) });
    await expect(other.dial(wrong, { allowUnpinnedProxy: true })).rejects.toMatchObject({ code: 'ERR_UNKNOWN_DESTINATION' });
  });
});
