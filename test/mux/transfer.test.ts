import { describe, expect, it } from 'vitest';
import type { YamuxStream } from '../../src/mux/index.js';
import { digest, sendRandom, sessionPair, teardown } from './helpers.js';

const MiB = 1 << 20;

describe('bulk transfer over real TCP', { timeout: 30_000 }, () => {
  it('moves 256 MiB over one stream intact (SHA-256) in seconds', async () => {
    const pair = await sessionPair();
    const received = new Promise<{ sha256: string; bytes: number }>((resolve, reject) => {
      pair.b.once('stream', (stream: YamuxStream) => {
        digest(stream).then((result) => {
          stream.end();
          resolve(result);
        }, reject);
      });
    });
    const started = performance.now();
    const stream = pair.a.openStream();
    stream.resume();
    const sent = await sendRandom(stream, 256 * MiB);
    const result = await received;
    const seconds = (performance.now() - started) / 1000;
    console.log(`256 MiB over one stream (random data, SHA-256 on both ends): ${seconds.toFixed(2)} s = ${(256 / seconds).toFixed(0)} MiB/s`);
    expect(result.bytes).toBe(256 * MiB);
    expect(result.sha256).toBe(sent);
    expect(seconds).toBeLessThan(30);
    expect(await teardown(pair)).toEqual([undefined, undefined]);
  });
});
