import { once } from 'node:events';
import { afterAll, describe, expect, it } from 'vitest';
import { Endpoint, Identity, Manager, Proxy, RoutingId, type ProxyRegistration, type ProxyVcOpenedEvent } from '../../src/index.js';
import { Cluster, type ClusterOptions } from '../../src/cluster/index.js';
import { serveEcho, useNetwork } from '../fixtures.js';
import { digestStream, startRelay, waitFor, writeRandom, type Direction, type Relay } from '../helpers.js';
import { startNats, stopAllNats, type NatsServer } from './nats.js';

const MiB = 1 << 20;

interface Node {
  proxy: Proxy;
  cluster: Cluster;
}

describe('a cluster of proxies on NATS', () => {
  const net = useNetwork();
  afterAll(stopAllNats);

  /** `count` proxies joined to one cluster on `nats`, each a member of the others' lists. */
  async function cluster(nats: NatsServer, count: number, options: Omit<Partial<ClusterOptions>, 'advertise'> & { advertise?: (proxy: Proxy) => Promise<string> } = {}): Promise<Node[]> {
    const identities = Array.from({ length: count }, () => Identity.generate());
    const members = identities.map((identity) => identity.routingId.toString());
    const nodes: Node[] = [];
    for (const identity of identities) {
      const proxy = await net.proxy({ identity });
      const advertise = options.advertise === undefined ? undefined : await options.advertise(proxy);
      const joined = Cluster.join(proxy, { ...options, servers: nats.url, members, advertise });
      net.defer(() => joined.close());
      nodes.push({ proxy, cluster: joined });
    }
    await Promise.all(nodes.map((node) => node.cluster.ready));
    return nodes;
  }

  /** What a client dials to reach `rid` through `proxy`. */
  function via(proxy: Proxy, rid: RoutingId): Endpoint {
    return new Endpoint(proxy.host, proxy.port, rid, proxy.routingId);
  }

  async function settle(nodes: Node[]): Promise<void> {
    await Promise.all(nodes.map((node) => node.cluster.flush()));
  }

  it('reaches every server by routing id through every proxy, bytes intact, from three proxies on one NATS', async () => {
    const nats = await startNats();
    const nodes = await cluster(nats, 3);
    const servers = await Promise.all(
      nodes.map(async ({ proxy }) => {
        const server = net.manager();
        await server.proxyListen('main', proxy.endpoint);
        serveEcho(server);
        return server;
      }),
    );
    await settle(nodes);
    const opened: ProxyVcOpenedEvent[] = [];
    for (const { proxy } of nodes) proxy.on('vcOpened', (event) => opened.push(event));
    const results = await Promise.all(
      nodes.flatMap(({ proxy }) =>
        servers.map(async (server) => {
          const client = net.manager();
          const flow = await client.dial(via(proxy, server.routingId));
          const [sent, received] = await Promise.all([writeRandom(flow, 2 * MiB), digestStream(flow)]);
          return { proxy: proxy.routingId.toString(), server: server.routingId.toString(), intact: received.sha256 === sent && received.bytes === 2 * MiB, key: flow.remotePublicKey.equals(server.identity.publicKey) };
        }),
      ),
    );
    expect(results).toHaveLength(9);
    expect(results.filter((r) => r.intact && r.key)).toHaveLength(9);
    // Six of the nine went through a second proxy: each relaying proxy reports the server's proxy.
    const relayed = opened.filter((event) => event.serverProxy !== undefined);
    expect(relayed).toHaveLength(6);
    const forwarded = opened.filter((event) => event.clientProxy !== undefined);
    expect(forwarded).toHaveLength(6);
    for (const event of relayed) expect(servers.map((s) => s.routingId.toString())).toContain(event.server);
    const stats = nodes.map((node) => node.cluster.stats());
    expect(stats.map((s) => s.lookupsFound)).toEqual([2, 2, 2]);
    expect(stats.every((s) => s.connected && s.held === 1)).toBe(true);
  });

  it('answers a dial to a routing id no proxy of the cluster holds at once, with ERR_UNKNOWN_DESTINATION', async () => {
    const nats = await startNats();
    const [a, b] = await cluster(nats, 2);
    const server = net.manager();
    await server.proxyListen('main', b.proxy.endpoint);
    serveEcho(server);
    await settle([a, b]);
    const client = net.manager();
    // The hop connection to proxy A is up already: what is timed is the VC's refusal alone.
    (await client.dial(via(a.proxy, server.routingId))).destroy();
    const nobody = Identity.generate().routingId;
    const started = performance.now();
    const err = await client.dial(via(a.proxy, nobody)).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    console.log(`cluster: unknown routing id refused in ${elapsed.toFixed(1)} ms`);
    expect(err).toMatchObject({ name: 'VcRejectedError', code: 'ERR_UNKNOWN_DESTINATION', reason: 1 });
    expect((err as Error).message).toContain(nobody.toString());
    expect((err as Error).message).toContain('any proxy of its cluster');
    expect(elapsed).toBeLessThan(1000);
  });

  it('lets a registration of the same key on a second proxy supersede the first, which is told where it went', async () => {
    const nats = await startNats();
    const nodes = await cluster(nats, 3);
    const [a, b, c] = nodes;
    const identity = Identity.generate();
    const answering = (manager: Manager, answer: string): void => {
      void (async () => {
        for await (const flow of manager) {
          flow.on('error', () => undefined);
          await flow.writeMsgAndClose(Buffer.from(answer));
        }
      })();
    };
    const first = net.manager({ identity });
    const firstRegistration: ProxyRegistration = await first.proxyListen('main', a.proxy.endpoint);
    answering(first, 'first');
    await settle(nodes);
    const ask = async (proxy: Proxy): Promise<string> => {
      const flow = await net.manager().dial(via(proxy, identity.routingId));
      flow.on('error', () => undefined);
      const answer = (await flow.readMsg()).toString();
      flow.destroy();
      return answer;
    };
    expect(await ask(c.proxy)).toBe('first');

    const superseded = once(a.cluster, 'superseded');
    const second = net.manager({ identity });
    await second.proxyListen('main', b.proxy.endpoint);
    answering(second, 'second');
    const closed = await firstRegistration.closed;
    expect(closed).toMatchObject({ code: 'ERR_SUPERSEDED', reason: 6 });
    expect((closed as Error).message).toContain(`on cluster proxy ${b.proxy.routingId}`);
    expect((closed as Error).message).toMatch(/ from 127\.0\.0\.1:\d+$/);
    const [event] = await superseded;
    expect(event).toMatchObject({ routingId: identity.routingId.toString(), proxy: b.proxy.routingId.toString() });
    expect(a.proxy.isRegistered(identity.routingId)).toBe(false);
    await settle(nodes);
    for (const node of nodes) expect(await ask(node.proxy)).toBe('second');
    expect(b.proxy.isRegistered(identity.routingId)).toBe(true);
  });

  it('keeps local traffic flowing while NATS is down, refuses remote dials with ERR_UNREACHABLE, and reaches remote servers again once NATS is back', async () => {
    const nats = await startNats();
    const [a, b] = await cluster(nats, 2);
    const local = net.manager();
    await local.proxyListen('main', a.proxy.endpoint);
    serveEcho(local);
    const remote = net.manager();
    await remote.proxyListen('main', b.proxy.endpoint);
    serveEcho(remote);
    await settle([a, b]);
    const client = net.manager();
    // A transfer through proxy A to its own server, running across the outage.
    const flow = await client.dial(via(a.proxy, local.routingId));
    const transfer = Promise.all([writeRandom(flow, 32 * MiB, 16 * 1024), digestStream(flow)]);
    // And a VC through A to B's server opened before it: the link between the proxies does not need NATS.
    const early = await net.manager().dial(via(a.proxy, remote.routingId));
    const earlyTransfer = Promise.all([writeRandom(early, 8 * MiB, 16 * 1024), digestStream(early)]);

    const down = Promise.all([once(a.cluster, 'directory'), once(b.cluster, 'directory')]);
    await nats.kill();
    const [[eventA]] = await down;
    expect(eventA).toMatchObject({ state: 'disconnected' });
    expect(a.cluster.connected).toBe(false);

    const started = performance.now();
    const err = await net
      .manager()
      .dial(via(a.proxy, remote.routingId))
      .catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    console.log(`cluster: remote dial refused in ${elapsed.toFixed(1)} ms with NATS down`);
    expect(err).toMatchObject({ name: 'VcRejectedError', code: 'ERR_UNREACHABLE', reason: 13 });
    expect((err as Error).message).toContain('cluster directory');
    expect((err as Error).message).toContain('unreachable');
    expect(elapsed).toBeLessThan(5000);
    // New local VCs still open, on proxy A as on proxy B.
    for (const [proxy, server] of [
      [a.proxy, local],
      [b.proxy, remote],
    ] as const) {
      const fresh = await net.manager().dial(via(proxy, server.routingId));
      const [sent, received] = await Promise.all([writeRandom(fresh, MiB), digestStream(fresh)]);
      expect(received.sha256).toBe(sent);
    }
    const [sent, received] = await transfer;
    expect(received.sha256).toBe(sent);
    const [earlySent, earlyReceived] = await earlyTransfer;
    expect(earlyReceived.sha256).toBe(earlySent);

    const up = Promise.all([once(a.cluster, 'directory'), once(b.cluster, 'directory')]);
    await nats.restart();
    const [[backA], [backB]] = await up;
    expect(backA).toMatchObject({ state: 'connected' });
    expect(backB).toMatchObject({ state: 'connected' });
    await settle([a, b]);
    const again = await net.manager().dial(via(a.proxy, remote.routingId));
    const [againSent, againReceived] = await Promise.all([writeRandom(again, MiB), digestStream(again)]);
    expect(againReceived.sha256).toBe(againSent);
  });

  it('shows a relaying proxy, and every hop around it, none of a known plaintext', async () => {
    const nats = await startNats();
    const recorded: Buffer[][] = [[], [], []];
    const recorder =
      (index: number) =>
      (_: Direction, chunk: Buffer): Buffer => {
        recorded[index].push(Buffer.from(chunk));
        return chunk;
      };
    // Proxy B is reached by proxy A through a recording relay: B advertises the relay's address.
    const [a, b] = await cluster(nats, 2, {
      advertise: async (proxy) => {
        const relay = await startRelay(proxy.port, { tap: recorder(1) });
        net.defer(() => relay.close());
        return `127.0.0.1:${relay.port}`;
      },
    });
    const serverRelay = await startRelay(b.proxy.port, { tap: recorder(2) });
    net.defer(() => serverRelay.close());
    const server = net.manager();
    await server.proxyListen('main', new Endpoint('127.0.0.1', serverRelay.port, b.proxy.routingId));
    serveEcho(server);
    await settle([a, b]);
    const clientRelay = await startRelay(a.proxy.port, { tap: recorder(0) });
    net.defer(() => clientRelay.close());
    const pattern = Buffer.alloc(MiB);
    for (let i = 0; i < pattern.length; i += 64) pattern.write(`ridproxy-known-plaintext-${String(i).padStart(8, '0')}-`.padEnd(64, '#'), i, 'latin1');
    const flow = await net.manager().dial(new Endpoint('127.0.0.1', clientRelay.port, server.routingId, a.proxy.routingId));
    flow.end(pattern);
    const echoed = await digestStream(flow);
    expect(echoed.bytes).toBe(MiB);
    for (const [index, hop] of ['client to proxy A', 'proxy A to proxy B', 'proxy B to server'].entries()) {
      const wire = Buffer.concat(recorded[index]);
      // Both directions of the 1 MiB echo crossed each hop, sealed.
      expect(wire.length, hop).toBeGreaterThan(2 * MiB);
      expect(wire.indexOf('ridproxy-known-plaintext'), hop).toBe(-1);
      expect(wire.indexOf(pattern.subarray(MiB / 2, MiB / 2 + 64)), hop).toBe(-1);
    }
  });

  it('ends the VCs a link carries on both far ends when the link between the proxies dies, and dials a new one for the next VC', async () => {
    const nats = await startNats();
    let link: Relay | undefined;
    const [a, b] = await cluster(nats, 2, {
      advertise: async (proxy) => {
        link = await startRelay(proxy.port);
        net.defer(() => link!.close());
        return `127.0.0.1:${link.port}`;
      },
    });
    const server = net.manager();
    await server.proxyListen('main', b.proxy.endpoint);
    let serverReceived = 0;
    const serverSide = new Promise<Error>((resolve) => {
      void (async () => {
        for await (const flow of server) {
          flow.on('error', resolve);
          flow.on('data', (chunk: Buffer) => (serverReceived += chunk.length));
        }
      })();
    });
    await settle([a, b]);
    const flow = await net.manager().dial(via(a.proxy, server.routingId));
    const clientSide = new Promise<Error>((resolve) => flow.on('error', resolve));
    flow.write(Buffer.alloc(64 * 1024));
    // Until the server has the flow: bytes forwarded by proxy A may still be on their way to it.
    await waitFor(() => serverReceived === 64 * 1024, 'the server to receive the bytes');
    const links = once(a.cluster, 'link');
    link!.cut();
    expect(await clientSide).toMatchObject({ code: 'ERR_CONNECTION_LOST' });
    expect(await serverSide).toMatchObject({ code: 'ERR_CONNECTION_LOST' });
    const [closed] = await links;
    expect(closed).toMatchObject({ proxy: b.proxy.routingId.toString(), state: 'closed' });
    await waitFor(() => a.proxy.stats().vcs === 0 && b.proxy.stats().vcs === 0, 'both proxies to forget the VC');
    const again = await net.manager().dial(via(a.proxy, server.routingId));
    again.on('error', () => undefined);
    again.write(Buffer.from('again'));
    await waitFor(() => b.proxy.stats().vcs === 1, 'a VC over a new link');
  });
});
