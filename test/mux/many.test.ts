import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { YamuxStream } from '../../src/mux/index.js';
import { readAll, sessionPair, teardown, waitFor } from './helpers.js';

function echoServer(stream: YamuxStream): void {
  // pipe() ends the writable side when the readable side ends: the echo half-closes after the request.
  stream.pipe(stream);
}

async function echo(stream: YamuxStream, payload: Buffer): Promise<Buffer> {
  const reply = readAll(stream);
  stream.end(payload);
  return reply;
}

describe('many streams on one session', { timeout: 30_000 }, () => {
  it('1,000 concurrent streams each echo 64 KiB intact', async () => {
    const pair = await sessionPair();
    pair.b.on('stream', echoServer);
    const started = performance.now();
    const payloads = Array.from({ length: 1000 }, () => randomBytes(64 * 1024));
    const streams = payloads.map(() => pair.a.openStream());
    expect(pair.a.streamCount).toBe(1000);
    expect(new Set(streams.map((s) => s.id)).size).toBe(1000);
    expect(streams.every((s) => s.id % 2 === 1)).toBe(true);
    const replies = await Promise.all(streams.map((s, i) => echo(s, payloads[i])));
    for (let i = 0; i < replies.length; i++) expect(replies[i].equals(payloads[i])).toBe(true);
    console.log(`1,000 concurrent 64 KiB echoes: ${(performance.now() - started).toFixed(0)} ms`);
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    expect(await teardown(pair)).toEqual([undefined, undefined]);
  });

  it('10,000 sequential streams reuse slots (maxStreams 4): open, write, end, read the echo, close', async () => {
    const pair = await sessionPair({ maxStreams: 4 }, { maxStreams: 4 });
    pair.b.on('stream', echoServer);
    const started = performance.now();
    const payload = Buffer.from('ping over a fresh stream');
    let lastId = 0;
    for (let i = 0; i < 10_000; i++) {
      const stream = pair.a.openStream();
      expect(stream.id).toBeGreaterThan(lastId);
      lastId = stream.id;
      const reply = await echo(stream, payload);
      if (!reply.equals(payload)) throw new Error(`stream ${stream.id} echoed ${reply.toString()}`);
    }
    console.log(`10,000 sequential stream round trips: ${(performance.now() - started).toFixed(0)} ms`);
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    expect(lastId).toBe(2 * 10_000 - 1);
    expect(await teardown(pair)).toEqual([undefined, undefined]);
  });

  it('refuses streams beyond maxStreams: openStream throws ERR_STREAM_LIMIT, an incoming one is reset', async () => {
    const pair = await sessionPair({ maxStreams: 2 }, { maxStreams: 1 });
    const accepted: YamuxStream[] = [];
    pair.b.on('stream', (stream: YamuxStream) => {
      stream.on('error', () => {});
      accepted.push(stream);
    });
    const first = pair.a.openStream();
    const second = pair.a.openStream();
    expect(() => pair.a.openStream()).toThrow(expect.objectContaining({ code: 'ERR_STREAM_LIMIT' }));
    const reset = new Promise<Error & { code?: string }>((resolve) => second.once('error', resolve));
    second.write('x');
    expect((await reset).code).toBe('ERR_STREAM_RESET');
    expect(accepted.map((s) => s.id)).toEqual([first.id]);
    // The refused stream gave its slot back, so another can be opened.
    expect(pair.a.streamCount).toBe(1);
    const third = pair.a.openStream();
    third.on('error', () => {});
    first.destroy();
    third.destroy();
    await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
    await teardown(pair);
  });
});
