import { connect, createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Reason } from '../../src/errors.js';
import { Identity } from '../../src/id/identity.js';
import { RoutingId } from '../../src/id/routing-id.js';
import { SegmentType, TAG_SIZE, segmentHeader } from '../../src/secure/framing.js';
import { secureChannel, type PeerIdentity } from '../../src/secure/index.js';
import { activeResources, expectNoLeaks } from '../helpers.js';
import { openChannels, rejection, startChannels, tcpPair } from './net.js';

let baseline: Record<string, number>;
beforeAll(() => {
  baseline = activeResources();
});
afterAll(async () => {
  await expectNoLeaks(baseline);
});

describe('authentication', () => {
  test('a dialer expecting another routing ID fails with ERR_AUTHENTICATION naming both, and the acceptor learns why', async () => {
    const expected = Identity.generate().routingId;
    const { dialer, acceptor, acceptorIdentity } = await startChannels({ dialer: { expectedRoutingId: expected } });
    const [atDialer, atAcceptor] = await Promise.all([rejection(dialer), rejection(acceptor)]);
    expect(atDialer).toMatchObject({ name: 'AuthenticationError', code: 'ERR_AUTHENTICATION' });
    expect(atDialer.message).toContain(`dialed routing id ${expected}`);
    expect(atDialer.message).toContain(`hashes to routing id ${acceptorIdentity.routingId}`);
    expect(atAcceptor).toMatchObject({ code: 'ERR_AUTHENTICATION' });
    expect(atAcceptor.message).toMatch(/^peer [0-9a-f]{32} refused this connection: it dialed routing id [0-9a-f]{32}, and this side is routing id [0-9a-f]{32}$/);
  });

  test('an acceptor expecting the routing ID the VC claimed refuses a dialer that proves another, and the dialer learns why', async () => {
    const claimed = Identity.generate().routingId;
    const { dialer, acceptor } = await startChannels({ acceptor: { expectedRoutingId: claimed } });
    const [atDialer, atAcceptor] = await Promise.all([rejection(dialer), rejection(acceptor)]);
    expect(atAcceptor).toMatchObject({ code: 'ERR_AUTHENTICATION' });
    expect(atAcceptor.message).toContain(`claimed to come from routing id ${claimed}`);
    expect(atDialer).toMatchObject({ code: 'ERR_AUTHENTICATION' });
    expect(atDialer.message).toContain(`the VC claimed to come from routing id ${claimed}`);
  });

  test('a dialer that names no routing ID (or the null one) accepts whoever answers', async () => {
    for (const expectedRoutingId of [undefined, RoutingId.NULL]) {
      const { dialer, acceptor, acceptorIdentity } = await openChannels({ dialer: { expectedRoutingId } });
      expect(dialer.peerRoutingId.equals(acceptorIdentity.routingId)).toBe(true);
      dialer.stream.destroy();
      acceptor.stream.destroy();
    }
  });

  test('a peer that does not speak the channel protocol fails the handshake at once with ERR_PROTOCOL', async () => {
    const [dialerSocket, other] = await tcpPair();
    other.end('GET / HTTP/1.1\r\nHost: example\r\n\r\n');
    other.resume();
    const err = await rejection(secureChannel(dialerSocket, { identity: Identity.generate(), role: 'dialer' }));
    expect(err).toMatchObject({ code: 'ERR_PROTOCOL', message: 'secure channel: the peer does not speak this protocol (segment type 71 is unknown)' });
    expect(dialerSocket.destroyed).toBe(true);
  });

  test('a handshake segment that is not TLS fails the handshake at once with ERR_AUTHENTICATION', async () => {
    const [dialerSocket, other] = await tcpPair();
    const garbage = Buffer.from('not a TLS record, but long enough to be read as one');
    other.end(Buffer.concat([segmentHeader(SegmentType.Handshake, garbage.length), garbage]));
    other.resume();
    const err = await rejection(secureChannel(dialerSocket, { identity: Identity.generate(), role: 'dialer' }));
    expect(err).toMatchObject({ code: 'ERR_AUTHENTICATION' });
    expect(err.message).toMatch(/^secure channel: the TLS handshake failed: /);
    expect(dialerSocket.destroyed).toBe(true);
  });
  test('records sent before the handshake are held only up to a bound, then the channel fails with ERR_PROTOCOL', async () => {
    const [dialerSocket, acceptorSocket] = await tcpPair();
    const body = Buffer.alloc(1024 + TAG_SIZE);
    dialerSocket.on('error', () => undefined);
    dialerSocket.resume();
    for (let i = 0; i < 8; i++) dialerSocket.write(Buffer.concat([segmentHeader(SegmentType.Data, body.length), body]));
    const err = await rejection(secureChannel(acceptorSocket, { identity: Identity.generate(), role: 'acceptor' }));
    expect(err).toMatchObject({ code: 'ERR_PROTOCOL', message: 'secure channel: the peer sent more than 4096 bytes of records before the handshake finished' });
    expect(acceptorSocket.destroyed).toBe(true);
    dialerSocket.destroy();
  });
});

describe('authorize', () => {
  test("the acceptor sees the dialer's key; refusing it fails both ends with ERR_UNAUTHORIZED", async () => {
    const seen: PeerIdentity[] = [];
    const { dialer, acceptor, dialerIdentity, acceptorIdentity } = await startChannels({
      acceptor: {
        authorize: (peer) => {
          seen.push(peer);
          return false;
        },
      },
    });
    const [atDialer, atAcceptor] = await Promise.all([rejection(dialer), rejection(acceptor)]);
    expect(seen).toHaveLength(1);
    expect(seen[0].publicKey.equals(dialerIdentity.publicKey)).toBe(true);
    expect(seen[0].routingId.equals(dialerIdentity.routingId)).toBe(true);
    expect(atAcceptor).toMatchObject({ name: 'UnauthorizedError', code: 'ERR_UNAUTHORIZED', message: `refused peer ${dialerIdentity.routingId}: authorize returned false` });
    expect(atDialer).toMatchObject({
      name: 'UnauthorizedError',
      code: 'ERR_UNAUTHORIZED',
      message: `peer ${acceptorIdentity.routingId} refused this connection: routing id ${dialerIdentity.routingId} is not authorized`,
    });
  });

  test("a dialer's authorize can refuse the server too, and a throwing authorize refuses", async () => {
    const { dialer, acceptor, acceptorIdentity } = await startChannels({
      dialer: {
        authorize: async () => {
          throw new Error('not on the allow-list');
        },
      },
    });
    const [atDialer, atAcceptor] = await Promise.all([rejection(dialer), rejection(acceptor)]);
    expect(atDialer).toMatchObject({ code: 'ERR_UNAUTHORIZED', message: `refused peer ${acceptorIdentity.routingId}: authorize threw: not on the allow-list` });
    expect(atAcceptor).toMatchObject({ code: 'ERR_UNAUTHORIZED' });
    expect(atAcceptor.message).toMatch(/^peer [0-9a-f]{32} refused this connection: routing id [0-9a-f]{32} is not authorized$/);
  });

  test('a slow authorize that allows the peer delays the channel, which then works', async () => {
    const { dialer, acceptor } = await openChannels({
      acceptor: { authorize: () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 50)) },
      dialer: { authorize: () => true },
    });
    dialer.stream.write('ping');
    const [chunk] = (await new Promise((resolve) => acceptor.stream.once('data', (c) => resolve([c])))) as Buffer[];
    expect(chunk.toString()).toBe('ping');
    dialer.stream.destroy();
    acceptor.stream.destroy();
  });
});

describe('timeout and abort', () => {
  test('a peer that never answers fails the handshake with ERR_TIMEOUT, and the transport is destroyed', async () => {
    const [dialerSocket, silent] = await tcpPair();
    silent.resume();
    const started = Date.now();
    const err = await rejection(secureChannel(dialerSocket, { identity: Identity.generate(), role: 'dialer', timeout: 150 }));
    expect(err).toMatchObject({ name: 'TimeoutError', code: 'ERR_TIMEOUT', message: 'the secure-channel handshake did not finish within 150 ms' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(dialerSocket.destroyed).toBe(true);
    silent.destroy();
  });

  test('the timeout covers an authorize that never returns', async () => {
    const { dialer, acceptor } = await startChannels({ acceptor: { authorize: () => new Promise<boolean>(() => undefined), timeout: 150 } });
    const [atDialer, atAcceptor] = await Promise.all([rejection(dialer), rejection(acceptor)]);
    expect(atAcceptor).toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(atDialer).toMatchObject({ code: 'ERR_CONNECTION_LOST' });
    expect(atDialer.message).toMatch(/closed the connection during the handshake|transport closed during the handshake/);
  });

  test('aborting fails the handshake with ERR_ABORTED; an aborted signal fails it at once', async () => {
    const [dialerSocket, silent] = await tcpPair();
    silent.resume();
    const controller = new AbortController();
    const pending = secureChannel(dialerSocket, { identity: Identity.generate(), role: 'dialer', signal: controller.signal });
    setTimeout(() => controller.abort(new Error('user pressed ^C')), 20);
    const err = await rejection(pending);
    expect(err).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED', message: 'the secure-channel handshake was aborted' });
    expect((err.cause as Error).message).toBe('user pressed ^C');
    expect(dialerSocket.destroyed).toBe(true);

    const [another, peer] = await tcpPair();
    const early = await rejection(secureChannel(another, { identity: Identity.generate(), role: 'dialer', signal: AbortSignal.abort() }));
    expect(early).toMatchObject({ code: 'ERR_ABORTED' });
    expect(another.destroyed).toBe(true);
    silent.destroy();
    peer.destroy();
  });

  test('the peer closing mid-handshake fails it with ERR_CONNECTION_LOST', async () => {
    const server = createServer((socket) => socket.once('data', () => socket.destroy()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const err = await rejection(secureChannel(socket, { identity: Identity.generate(), role: 'dialer' }));
    expect(err).toMatchObject({ name: 'VcClosedError', code: 'ERR_CONNECTION_LOST', reason: Reason.ConnectionLost });
    await new Promise((resolve) => server.close(resolve));
  });
});

test('bad options are refused with ERR_INVALID_OPTION, and the transport is not left open', async () => {
  const identity = Identity.generate();
  const cases: Array<[object, RegExp]> = [
    [{ identity: {}, role: 'dialer' }, /identity must be an Identity/],
    [{ identity, role: 'server' }, /role must be 'dialer' or 'acceptor', got "server"/],
    [{ identity, role: 'dialer', timeout: 0 }, /timeout must be a positive number of ms, got 0/],
  ];
  for (const [options, message] of cases) {
    const [a, b] = await tcpPair();
    const err = await rejection(secureChannel(a, options as Parameters<typeof secureChannel>[1]));
    expect(err).toMatchObject({ code: 'ERR_INVALID_OPTION', message });
    expect(a.destroyed).toBe(true);
    b.destroy();
  }
});
