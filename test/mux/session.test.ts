import { createHook } from 'node:async_hooks';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { MuxError } from '../../src/errors.js';
import { Flag, FrameType, YamuxSession, type YamuxStream } from '../../src/mux/index.js';
import { nextError, readAll, sessionPair, sleep, socketPair, teardown, waitFor } from './helpers.js';
import { sessionWithRawPeer } from './raw-peer.js';

const KiB = 1024;

/**
 * Tracks timers created by session.ts and TCP handles created while it runs, to prove that
 * every one of them is gone after the session ends. (Counting process.getActiveResourcesInfo()
 * would not do: unref'd timers are not listed, and other tests' sockets come and go meanwhile.)
 */
function trackResources(): { live(): string[]; stop(): void } {
  const live = new Map<number, string>();
  const hook = createHook({
    init(asyncId, type) {
      if (type === 'TCPWRAP') live.set(asyncId, type);
      if (type === 'Timeout' && new Error().stack?.includes('/src/mux/session')) live.set(asyncId, type);
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  return { live: () => [...live.values()], stop: () => hook.disable() };
}

/** Destroy hooks run from a later turn of the event loop than the destruction itself. */
async function settleHooks(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe('YamuxSession ping and keepalive', { timeout: 30_000 }, () => {
  it('ping() measures the round-trip time and records it in rtt', async () => {
    const pair = await sessionPair();
    expect(pair.a.rtt).toBeUndefined();
    const rtt = await pair.a.ping();
    expect(typeof rtt).toBe('number');
    expect(rtt).toBeGreaterThan(0);
    expect(rtt).toBeLessThan(1000);
    expect(pair.a.rtt).toBe(rtt);
    const several = await Promise.all([pair.b.ping(), pair.b.ping(), pair.b.ping()]);
    expect(several.every((value) => value > 0)).toBe(true);
    await teardown(pair);
  });

  it('keepalive pings keep rtt up to date on both sides', async () => {
    const pair = await sessionPair({ keepAliveInterval: 30 }, { keepAliveInterval: 30 });
    await waitFor(() => pair.a.rtt !== undefined && pair.b.rtt !== undefined, 2000);
    await teardown(pair);
  });

  it('a peer that stops answering pings is detected: the session fails with ERR_KEEPALIVE_TIMEOUT', async () => {
    const { client, server } = await socketPair();
    // The server side runs no yamux and never reads, like a hung process.
    server.pause();
    const started = Date.now();
    const session = new YamuxSession(client, { client: true, keepAliveInterval: 100, keepAliveTimeout: 300 });
    const stream = session.openStream();
    const streamFailure = nextError(stream);
    const err = (await session.closed) as MuxError;
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(MuxError);
    expect(err.code).toBe('ERR_KEEPALIVE_TIMEOUT');
    expect(elapsed).toBeGreaterThanOrEqual(380);
    expect(elapsed).toBeLessThan(2000);
    expect((await streamFailure).code).toBe('ERR_KEEPALIVE_TIMEOUT');
    await waitFor(() => client.destroyed);
    server.destroy();
  });

  for (const ending of ['close()', 'destroy()'] as const) {
    it(`after ${ending} no timer or socket of the session remains`, async () => {
      const tracker = trackResources();
      try {
        const pair = await sessionPair({ keepAliveInterval: 20 }, { keepAliveInterval: 20 });
        pair.b.on('stream', (stream: YamuxStream) => stream.pipe(stream));
        const stream = pair.a.openStream();
        const reply = readAll(stream);
        stream.end('x');
        await reply;
        await waitFor(() => pair.a.rtt !== undefined && pair.b.rtt !== undefined);
        expect(tracker.live().filter((r) => r === 'Timeout').length).toBeGreaterThanOrEqual(2);
        expect(tracker.live().filter((r) => r === 'TCPWRAP').length).toBe(2);
        if (ending === 'close()') {
          expect(await teardown(pair)).toEqual([undefined, undefined]);
        } else {
          pair.a.destroy();
          expect(await pair.a.closed).toBeUndefined();
          // The peer sees a GoAway and then the connection closing under it.
          await pair.b.closed;
          await Promise.all([pair.client, pair.server].map((s) => (s.closed ? undefined : once(s, 'close'))));
        }
        await settleHooks();
        expect(tracker.live()).toEqual([]);
      } finally {
        tracker.stop();
      }
    });
  }
});

describe('YamuxSession close and teardown', { timeout: 30_000 }, () => {
  it('close() sends GoAway: neither side can open streams, the open one finishes, then both settle cleanly', async () => {
    const pair = await sessionPair();
    const accepted = new Promise<YamuxStream>((resolve) => pair.b.once('stream', resolve));
    const stream = pair.a.openStream();
    stream.write('before close');
    const remote = await accepted;
    pair.a.close();
    expect(pair.a.isClosed).toBe(true);
    expect(() => pair.a.openStream()).toThrow(expect.objectContaining({ code: 'ERR_SESSION_CLOSED' }));
    await waitFor(() => {
      try {
        pair.b.openStream().destroy();
        return false;
      } catch (err) {
        return (err as MuxError).code === 'ERR_SESSION_CLOSED';
      }
    });
    // The stream opened before close() still works both ways.
    const fromA = readAll(remote);
    const fromB = readAll(stream);
    stream.end(' and after');
    remote.end('reply');
    expect((await fromA).toString()).toBe('before close and after');
    expect((await fromB).toString()).toBe('reply');
    expect(await pair.a.closed).toBeUndefined();
    expect(await pair.b.closed).toBeUndefined();
    await waitFor(() => pair.client.closed && pair.server.closed);
  });

  it('the transport ending under open streams fails them with ERR_SESSION_CLOSED', async () => {
    for (const cut of ['end', 'destroy'] as const) {
      const pair = await sessionPair();
      pair.b.on('stream', () => {});
      const stream = pair.a.openStream();
      stream.write('x');
      await waitFor(() => pair.b.streamCount === 1);
      const failure = nextError(stream);
      // Cut the connection from the server side without yamux saying goodbye.
      if (cut === 'end') pair.server.end();
      else pair.server.destroy();
      const err = await failure;
      expect(err.code).toBe('ERR_SESSION_CLOSED');
      expect(err.message).toBe('the connection carrying this stream closed');
      expect(await pair.a.closed).toBe(err);
      pair.b.destroy();
    }
  });

  it('a transport error fails the session and its streams with ERR_SESSION_CLOSED naming the cause', async () => {
    const pair = await sessionPair();
    pair.b.on('stream', () => {});
    const stream = pair.a.openStream();
    stream.write('x');
    await waitFor(() => pair.b.streamCount === 1);
    const failure = nextError(stream);
    pair.server.resetAndDestroy();
    const err = await failure;
    expect(err.code).toBe('ERR_SESSION_CLOSED');
    expect(err.message).toMatch(/the connection carrying this stream (failed: .*ECONNRESET|closed)/);
    pair.b.destroy();
  });

  it('destroy(err) fails every open stream with err; the peer is told with GoAway(internal error)', async () => {
    const pair = await sessionPair();
    const remoteFailures: Array<Promise<Error & { code?: string }>> = [];
    pair.b.on('stream', (stream: YamuxStream) => remoteFailures.push(nextError(stream)));
    const streams = [pair.a.openStream(), pair.a.openStream(), pair.a.openStream()];
    const failures = streams.map((s) => nextError(s));
    for (const s of streams) s.write('x');
    await waitFor(() => pair.b.streamCount === 3);
    const reason = new Error('shutting down for a test');
    pair.a.destroy(reason);
    expect(pair.a.streamCount).toBe(0);
    for (const err of await Promise.all(failures)) expect(err).toBe(reason);
    expect(await pair.a.closed).toBe(reason);
    const peerErr = (await pair.b.closed) as MuxError;
    expect(peerErr.code).toBe('ERR_SESSION_CLOSED');
    expect(peerErr.message).toMatch(/error code 2/);
    for (const err of await Promise.all(remoteFailures)) expect(err).toBe(peerErr);
    expect(() => pair.a.openStream()).toThrow(expect.objectContaining({ code: 'ERR_SESSION_CLOSED' }));
    await expect(pair.a.ping()).rejects.toMatchObject({ code: 'ERR_SESSION_CLOSED' });
  });

  it('stream writes wait for the transport to drain: confirmed bytes stop growing when the peer stops reading TCP', async () => {
    const { session, peer, transport } = await sessionWithRawPeer();
    const accepted = new Promise<YamuxStream>((resolve) => session.once('stream', resolve));
    // The peer grants a huge window so that only TCP backpressure can hold the sender back.
    peer.send(FrameType.WindowUpdate, Flag.SYN, 2, 0xffff_0000);
    const stream = await accepted;
    stream.on('error', () => {});
    peer.socket.pause();
    let confirmed = 0;
    let stalled = false;
    const block = Buffer.alloc(256 * KiB, 1);
    const writing = (async () => {
      while (!stalled) {
        if (!stream.write(block, (err) => !err && (confirmed += block.length))) {
          const drained = once(stream, 'drain').then(() => true);
          if (!(await Promise.race([drained, sleep(500).then(() => false)]))) stalled = true;
        }
      }
    })();
    await writing;
    const atStall = confirmed;
    await sleep(300);
    expect(confirmed).toBe(atStall);
    console.log(
      `transport backpressure: ${atStall} bytes confirmed before the stall (kernel buffers), ` +
        `transport writableLength ${transport.writableLength}, stream writableLength ${stream.writableLength}`,
    );
    // Loopback kernel buffers take a few MiB; what matters is that nothing in user space piles up:
    // the session stops after the one frame that pushed the socket past its highWaterMark.
    expect(atStall).toBeLessThan(64 * 1024 * KiB);
    expect(transport.writableLength).toBeLessThanOrEqual(transport.writableHighWaterMark + 64 * KiB + 1024);
    expect(stream.writableLength).toBeLessThanOrEqual(2 * block.length);
    session.destroy();
  });
});
