import { describe, expect, it } from 'vitest';
import { HopConnection } from '../../src/hop/connection.js';
import { Endpoint } from '../../src/id/endpoint.js';
import { Identity } from '../../src/id/identity.js';
import { Link } from '../../src/manager/link.js';
import type { RidproxyError } from '../../src/errors.js';
import type { VcErrorInfo } from '../../src/manager/manager.js';
import { secureChannel } from '../../src/secure/index.js';
import { FrameType, decodeOpenVc, encodeOpenVc, payloadOf } from '../../src/wire/index.js';
import { serveEcho, useNetwork } from '../fixtures.js';
import { readAll, socketTo } from '../helpers.js';

/**
 * A peer holding key M that opens a VC claiming to come from T: its Link writes T's routing id
 * and key into OpenVc, then it runs the end-to-end handshake with M's real key.
 */
async function claimAs(port: number, m: Identity, t: Identity, dst: Endpoint): Promise<RidproxyError> {
  const hop = await HopConnection.establish({ socket: await socketTo(port), identity: m, initiator: true, keepAliveInterval: 0 });
  const liar = new Link(hop, { routingId: t.routingId, publicKey: t.publicKey } as Identity, 256 * 1024, 256 * 1024);
  liar.start();
  const circuit = await liar.openVc(dst.routingId);
  const err = await secureChannel(circuit, { identity: m, role: 'dialer', expectedRoutingId: dst.routingId }).then(
    () => undefined,
    (e: RidproxyError) => e,
  );
  hop.destroy();
  return err!;
}

describe('state about a peer comes only from what it proved', () => {
  const net = useNetwork();

  it('refuses a VC from key M claiming routing id T, directly and through a lying proxy, and a later dial to T reaches T', async () => {
    const t = net.manager();
    const tEndpoint = await t.listen('127.0.0.1:0');
    void (async () => {
      for await (const flow of t) await flow.writeMsgAndClose(Buffer.from('this is T'));
    })();
    const m = Identity.generate();

    // Directly: M connects to the listening process and claims T in its open frame.
    const listener = net.manager();
    const direct = Endpoint.parse(await listener.listen('127.0.0.1:0'));
    serveEcho(listener);
    const refused = new Promise<[RidproxyError, VcErrorInfo]>((resolve) => listener.once('vcError', (err, info) => resolve([err, info])));
    const atM = await claimAs(direct.port, m, t.identity, direct);
    expect(atM).toMatchObject({ code: 'ERR_AUTHENTICATION', message: expect.stringContaining(`claimed to come from routing id ${t.routingId}`) });
    const [err, info] = await refused;
    expect(err).toMatchObject({ code: 'ERR_AUTHENTICATION', message: expect.stringContaining(`hashes to routing id ${m.routingId}`) });
    expect(info).toEqual({ claimedRoutingId: t.routingId.toString(), remoteRoutingId: undefined });
    // Nothing was filed under T: a dial to T opens a VC to T itself.
    expect(() => listener.dialCached(tEndpoint)).toThrow(expect.objectContaining({ code: 'ERR_NO_CACHED_VC' }));
    const toT = await listener.dial(tEndpoint);
    expect(toT.remotePublicKey.equals(t.identity.publicKey)).toBe(true);
    expect((await toT.readMsg()).toString()).toBe('this is T');

    // Through a proxy that lies: it rewrites the source of M's honest open frame to T.
    const proxy = await net.proxy();
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    const internals = proxy as unknown as { connections: Set<{ hop: { peerRoutingId: { equals(x: unknown): boolean }; send: (...args: unknown[]) => void } }> };
    const serverConn = [...internals.connections].find((c) => c.hop.peerRoutingId.equals(server.routingId))!;
    const send = serverConn.hop.send.bind(serverConn.hop);
    serverConn.hop.send = (type: unknown, vci: unknown, payload: unknown) => {
      if (type !== FrameType.OpenVc) return send(type, vci, payload);
      const open = decodeOpenVc(payloadOf({ type: FrameType.OpenVc, flags: 0, vci: vci as number, length: (payload as Buffer).length, parts: [payload as Buffer] }));
      return send(type, vci, encodeOpenVc({ ...open, src: t.routingId, srcPublicKey: t.identity.publicKey, tokenMac: undefined }));
    };
    const viaProxy = new Promise<[RidproxyError, VcErrorInfo]>((resolve) => server.once('vcError', (e, i) => resolve([e, i])));
    const mManager = net.manager({ identity: m });
    await expect(mManager.dial(server.status().endpoints[0])).rejects.toMatchObject({ code: 'ERR_AUTHENTICATION' });
    const [proxiedErr, proxiedInfo] = await viaProxy;
    expect(proxiedErr).toMatchObject({ code: 'ERR_AUTHENTICATION' });
    expect(proxiedInfo.claimedRoutingId).toBe(t.routingId.toString());
    expect(() => server.dialCached(tEndpoint)).toThrow(expect.objectContaining({ code: 'ERR_NO_CACHED_VC' }));
    const fromServer = await server.dial(tEndpoint);
    expect(fromServer.remotePublicKey.equals(t.identity.publicKey)).toBe(true);
    expect((await fromServer.readMsg()).toString()).toBe('this is T');
  });

  it('authorize returning false for X keeps X out of accept(), whichever side dialed', async () => {
    const x = net.manager();
    const xEndpoint = await x.listen('127.0.0.1:0');
    const y = net.manager();
    const yEndpoint = await y.listen('127.0.0.1:0');
    const server = net.manager({ authorize: (peer) => !peer.routingId.equals(x.routingId) });
    const serverEndpoint = await server.listen('127.0.0.1:0');
    const accepted: string[] = [];
    void (async () => {
      for await (const flow of server) {
        accepted.push(flow.conn.remoteRoutingId.toString());
        flow.end('accepted');
      }
    })();

    // X dials the server: refused in the handshake, and reported under the identity X proved.
    const refusal = new Promise<VcErrorInfo>((resolve) => server.once('vcError', (_err, info) => resolve(info)));
    await expect(x.dial(serverEndpoint)).rejects.toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect(await refusal).toEqual({ claimedRoutingId: x.routingId.toString(), remoteRoutingId: x.routingId.toString() });

    // The server dials X, and X opens a flow back on that VC: reset, never accepted.
    const toX = await server.dial(xEndpoint, { sideChannel: true });
    toX.on('error', () => undefined);
    const back = x.dialCached(serverEndpoint);
    const backError = await new Promise<RidproxyError>((resolve) => {
      back.on('error', resolve);
      back.resume();
      back.write('let me in');
    });
    expect(backError).toMatchObject({ code: 'ERR_STREAM_RESET' });

    // The same with an authorized peer: the reverse flow arrives.
    const toY = await server.dial(yEndpoint, { sideChannel: true });
    toY.on('error', () => undefined);
    const yBack = y.dialCached(serverEndpoint);
    yBack.end();
    expect((await readAll(yBack)).toString()).toBe('accepted');
    expect(accepted).toEqual([y.routingId.toString()]);
    expect(Endpoint.parse(toY.remoteEndpoint).routingId.equals(y.routingId)).toBe(true);
  });
});
