import { connect as natsConnect } from '@nats-io/transport-node';
import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { Endpoint, Identity, RoutingId, type Proxy } from '../../src/index.js';
import { Cluster, type ClusterDroppedEvent } from '../../src/cluster/index.js';
import { signClaim } from '../../src/cluster/messages.js';
import { dialHop } from '../../src/hop/dial.js';
import type { HopConnection } from '../../src/hop/connection.js';
import { FrameType, decodeReason, encodeOpenVc, payloadOf, type Frame } from '../../src/wire/index.js';
import { serveEcho, useNetwork } from '../fixtures.js';
import { digestStream, waitFor, writeRandom } from '../helpers.js';
import { startNats, stopAllNats, type NatsServer } from './nats.js';

describe('a cluster proxy facing hostile peers and a hostile directory', () => {
  const net = useNetwork();
  afterAll(stopAllNats);

  async function member(nats: NatsServer, members: string[]): Promise<{ proxy: Proxy; cluster: Cluster }> {
    const proxy = await net.proxy();
    const cluster = Cluster.join(proxy, { servers: nats.url, members: [...members, proxy.routingId.toString()] });
    net.defer(() => cluster.close());
    await cluster.ready;
    return { proxy, cluster };
  }

  /** A hop connection to `proxy` proving `identity`, its frames collected. */
  async function hopTo(proxy: Proxy, identity: Identity): Promise<{ hop: HopConnection; frames: Frame[] }> {
    const hop = await dialHop(new Endpoint(proxy.host, proxy.port, proxy.routingId), { identity });
    net.defer(async () => hop.close());
    const frames: Frame[] = [];
    hop.start((frame) => frames.push({ ...frame, parts: frame.parts.map((part) => Buffer.from(part)) }));
    return { hop, frames };
  }

  function openVc(dst: RoutingId, client: Identity | { routingId: RoutingId; publicKey: Buffer }): Buffer {
    return encodeOpenVc({ dst, src: client.routingId, srcPublicKey: client.publicKey, window: 65536 });
  }

  it('cuts off a peer that is not a member when it opens a VC for another routing id, and refuses a member VCs it does not hold without forwarding them', async () => {
    const nats = await startNats();
    const friend = Identity.generate();
    const { proxy } = await member(nats, [friend.routingId.toString()]);
    const client = Identity.generate();

    const stranger = await hopTo(proxy, Identity.generate());
    stranger.hop.send(FrameType.OpenVc, 1, openVc(Identity.generate().routingId, client));
    expect(await stranger.hop.closed).toMatchObject({ code: 'ERR_PROTOCOL' });

    const link = await hopTo(proxy, friend);
    link.hop.send(FrameType.OpenVc, 1, openVc(Identity.generate().routingId, client));
    await waitFor(() => link.frames.length > 0, 'the refusal');
    expect(link.frames[0].type).toBe(FrameType.VcRejected);
    const { reason, message } = decodeReason(payloadOf(link.frames[0]));
    expect(reason).toBe(1);
    expect(message).toContain(`cluster proxy ${friend.routingId} forwarded the VC here`);
    expect(proxy.stats().vcs).toBe(0);

    // Even a member must not name a source whose key is not the source's.
    const liar = { routingId: Identity.generate().routingId, publicKey: client.publicKey };
    link.hop.send(FrameType.OpenVc, 3, openVc(Identity.generate().routingId, liar));
    expect(await link.hop.closed).toMatchObject({ code: 'ERR_PROTOCOL' });
  });

  it('drops forged, malformed and non-member directory messages, keeps its registrations, and refuses dials the directory answers wrongly', async () => {
    const nats = await startNats();
    const other = Identity.generate();
    const { proxy, cluster } = await member(nats, [other.routingId.toString()]);
    const server = net.manager();
    await server.proxyListen('main', proxy.endpoint);
    serveEcho(server);
    await cluster.flush();
    const dropped: ClusterDroppedEvent[] = [];
    cluster.on('dropped', (event) => dropped.push(event));

    const rogue = await natsConnect({ servers: nats.url });
    net.defer(() => rogue.close());
    const rid = server.routingId.toString();
    const subject = `ridproxy.ridproxy.rid.${rid}`;
    const stranger = Identity.generate();
    const later = Date.now() + 86_400_000;
    const forgedByStranger = signClaim('ridproxy', stranger, { rid, address: '203.0.113.1:1', at: later });
    const badSignature = { ...signClaim('ridproxy', other, { rid, address: '203.0.113.1:1', at: later }), at: later + 1 };
    const otherCluster = signClaim('elsewhere', other, { rid, address: '203.0.113.1:1', at: later });
    for (const message of [
      'not json',
      '[]',
      JSON.stringify({ rid }),
      'x'.repeat(100_000),
      JSON.stringify(forgedByStranger),
      JSON.stringify(badSignature),
      JSON.stringify(otherCluster),
      JSON.stringify({ ...forgedByStranger, rid: Identity.generate().routingId.toString() }),
    ]) {
      rogue.publish(subject, message);
    }
    // A lookup with garbage in it is still answered, with this proxy's address.
    const answer = await rogue.request(subject, 'garbage', { timeout: 2000 });
    expect(answer.json<{ proxy: string }>()).toMatchObject({ proxy: proxy.routingId.toString() });
    await rogue.flush();
    await waitFor(() => dropped.length >= 8, 'the dropped messages');
    expect(dropped.map((event) => event.reason)).toEqual(expect.arrayContaining([`a claim by proxy ${stranger.routingId}, which is not a member`, 'a malformed or unsigned claim']));
    expect(proxy.isRegistered(server.routingId)).toBe(true);

    // A rogue answering lookups for routing ids nobody holds: a malformed answer, then one naming a stranger.
    const ghost = Identity.generate().routingId;
    let answers = 0;
    rogue.subscribe(`ridproxy.ridproxy.rid.${ghost}`, {
      callback: (_, msg) => {
        answers++;
        msg.respond(answers === 1 ? '{"proxy": 5}' : JSON.stringify({ v: 1, proxy: stranger.routingId.toString(), address: '127.0.0.1:1', at: 1 }));
      },
    });
    await rogue.flush();
    const client = net.manager();
    const endpoint = new Endpoint(proxy.host, proxy.port, ghost, proxy.routingId);
    await expect(client.dial(endpoint)).rejects.toMatchObject({ code: 'ERR_UNREACHABLE', message: expect.stringContaining('malformed') });
    await expect(client.dial(endpoint)).rejects.toMatchObject({ code: 'ERR_UNREACHABLE', message: expect.stringContaining('not a member') });

    // The proxy carries on as before.
    const flow = await client.dial(new Endpoint(proxy.host, proxy.port, server.routingId, proxy.routingId));
    const [sent, received] = await Promise.all([writeRandom(flow, 1 << 20), digestStream(flow)]);
    expect(received.sha256).toBe(sent);
  });

  it('joins a NATS that requires a token only with it: a proxy without it stays on its own and says why', async () => {
    const nats = await startNats({ token: 's3cret-nats-token' });
    const identities = [Identity.generate(), Identity.generate()];
    const members = identities.map((identity) => identity.routingId.toString());
    const [good, bad] = await Promise.all(identities.map((identity) => net.proxy({ identity })));
    const server = net.manager();
    await server.proxyListen('main', good.endpoint);
    const joined = Cluster.join(good, { servers: nats.url, members, token: 's3cret-nats-token' });
    net.defer(() => joined.close());
    const refused = Cluster.join(bad, { servers: nats.url, members });
    net.defer(() => refused.close());
    const [event] = await once(refused, 'directory');
    expect(event).toMatchObject({ state: 'disconnected', detail: expect.stringMatching(/cannot reach the cluster directory.*retrying/) });
    await joined.ready;
    await joined.flush();
    expect(joined.connected).toBe(true);
    expect(refused.connected).toBe(false);
    const client = net.manager();
    await expect(client.dial(new Endpoint(bad.host, bad.port, server.routingId, bad.routingId))).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' });
  });
});
