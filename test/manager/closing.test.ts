import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Flow, Manager } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';
import { delay, waitFor, writeRandom } from '../helpers.js';

const MiB = 1 << 20;

describe('Manager.close and how a peer sees it', () => {
  const net = useNetwork({ checkLeaks: true });

  /**
   * Reads a flow to its end with 'data' events, resolving to the SHA-256 and count of what came.
   * (`for await` would destroy a flow whose own side is still open, with an AbortError.)
   */
  function drain(flow: Flow): Promise<{ sha256: string; bytes: number; text: string }> {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let bytes = 0;
    flow.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (chunks.length < 16) chunks.push(chunk);
    });
    return new Promise((resolve, reject) => {
      flow.once('end', () => resolve({ sha256: hash.digest('hex'), bytes, text: Buffer.concat(chunks).toString() }));
      flow.once('error', reject);
    });
  }

  /** The server's first accepted flow, read to the end (starting after `readDelay` ms) and then ended. */
  async function sink(server: Manager, readDelay = 0): Promise<{ sha256: string; bytes: number }> {
    const flow = await server.accept();
    await delay(readDelay);
    const { sha256, bytes } = await drain(flow);
    flow.end();
    return { sha256, bytes };
  }

  async function directPair(): Promise<{ server: Manager; client: Manager; endpoint: string }> {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    return { server, client: net.manager(), endpoint };
  }

  async function proxiedPair(): Promise<{ server: Manager; client: Manager; endpoint: string }> {
    const proxy = await net.proxy();
    const server = net.manager();
    const registration = await server.proxyListen('main', proxy.endpoint);
    return { server, client: net.manager(), endpoint: registration.endpoint };
  }

  for (const [name, pair] of [
    ['a direct', directPair],
    ['a proxied', proxiedPair],
  ] as const) {
    it(`delivers every byte a flow reported written when close() follows 'finish', on ${name} VC`, async () => {
      const { server, client, endpoint } = await pair();
      // The reader starts late, so most of the 8 MiB still waits for credit when close() is called.
      const received = sink(server, 100);
      const flow = await client.dial(endpoint);
      const errors: Error[] = [];
      flow.on('error', (err) => errors.push(err));
      const sent = await writeRandom(flow, 8 * MiB);
      await client.close();
      expect(await received).toEqual({ sha256: sent, bytes: 8 * MiB });
      expect(errors).toEqual([]);
    });
  }

  it('closes an idle VC at once instead of waiting out drainTimeout', async () => {
    const { server, client, endpoint } = await directPair();
    const received = sink(server);
    const flow = await client.dial(endpoint);
    flow.end('done');
    await Promise.all([received, drain(flow)]);
    await waitFor(() => flow.closed, 'the flow to close');
    expect(flow.conn.isOpen).toBe(true);
    const started = Date.now();
    await client.close({ drainTimeout: 3000 });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('gives the peer end-of-stream, not a connection lost, when it closes cleanly', async () => {
    const { server, client, endpoint } = await directPair();
    const flow = await client.dial(endpoint);
    const errors: Error[] = [];
    flow.on('error', (err) => errors.push(err));
    flow.write('hello');
    const accepted = await server.accept();
    accepted.on('error', () => undefined);
    accepted.write('bye');
    // The client never ends its side, so the server's close waits drainTimeout, then closes the VC.
    await server.close({ drainTimeout: 100 });
    expect((await drain(flow)).text).toBe('bye');
    await waitFor(() => flow.closed, 'the flow to close');
    expect(errors).toEqual([]);
    const closed = await flow.conn.closed;
    expect(closed).toMatchObject({ code: 'ERR_GOING_AWAY' });
    expect(closed?.message).toMatch(/peer's manager .* closed/);
  });

  it('fails a peer flow that was not finished with ERR_GOING_AWAY saying the peer closed, not "cut off"', async () => {
    const { server, client, endpoint } = await directPair();
    const flow = await client.dial(endpoint);
    flow.write('hello');
    const accepted: Flow = await server.accept();
    accepted.on('error', () => undefined);
    // More than the flow's window: the client does not read, so the server's end never goes out.
    accepted.write(Buffer.alloc(MiB));
    const failed = new Promise<Error>((resolve) => flow.once('error', resolve));
    await server.close({ drainTimeout: 100 });
    const err = await failed;
    expect(err).toMatchObject({ code: 'ERR_GOING_AWAY' });
    expect(err.message).toMatch(/peer's manager .* closed/);
    expect(err.message).not.toMatch(/cut off/);
  });

  it('rejects a pending accept() with ERR_MANAGER_CLOSED on close()', async () => {
    const { server } = await directPair();
    const pending = server.accept();
    await server.close();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_MANAGER_CLOSED' });
  });
});
