import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Flow, Manager } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';
import { sha256 } from '../helpers.js';

/*
 * readMsg reads the 4-byte prefix and then calls read(length). For a length that is a power of
 * two of at least the stream window (256 KiB), that raised the highWaterMark to exactly the
 * length and the flow stalled forever (see test/mux/read-n.test.ts for the mechanism).
 */

const KiB = 1024;
const MiB = 1024 * KiB;

type Route = 'direct' | 'through a proxy';

describe('Flow messages', () => {
  const net = useNetwork({ checkLeaks: true });

  /** A client flow and the server flow it reached, directly or through a proxy. */
  async function flowPair(route: Route): Promise<{ client: Flow; server: Flow }> {
    const server: Manager = net.manager();
    let endpoint: string;
    if (route === 'direct') {
      endpoint = await server.listen('127.0.0.1:0');
    } else {
      const proxy = await net.proxy();
      await server.proxyListen('main', proxy.endpoint);
      endpoint = server.status().endpoints[0];
    }
    const client = net.manager();
    const accepted = server.accept();
    const flow = await client.dial(endpoint);
    await flow.writeMsg(Buffer.from('hello'));
    const serverFlow = await accepted;
    expect((await serverFlow.readMsg()).toString()).toBe('hello');
    // Flows still open when the managers close end with ERR_MANAGER_CLOSED.
    flow.on('error', () => undefined);
    serverFlow.on('error', () => undefined);
    return { client: flow, server: serverFlow };
  }

  /** Writes the messages from one flow and reads them on the other, checking each. */
  async function exchange(from: Flow, to: Flow, messages: Buffer[]): Promise<void> {
    const writing = (async () => {
      for (const message of messages) await from.writeMsg(message);
    })();
    const reading = (async () => {
      for (const [index, message] of messages.entries()) {
        const received = await to.readMsg();
        expect(received.length, `message ${index}`).toBe(message.length);
        expect(sha256(received), `message ${index}`).toBe(sha256(message));
      }
    })();
    await Promise.all([writing, reading]);
  }

  for (const route of ['direct', 'through a proxy'] as const) {
    for (const size of [256 * KiB, 1 * MiB, 4 * MiB]) {
      it(`readMsg of ${size / KiB} KiB messages, 100 in a row, ${route}`, { timeout: 60_000 }, async () => {
        const { client, server } = await flowPair(route);
        const block = randomBytes(size);
        // Each message differs (its index up front), so a lost or repeated one changes a digest.
        const messages = Array.from({ length: 100 }, (_, index) => {
          const message = Buffer.from(block);
          message.writeUInt32BE(index, 0);
          return message;
        });
        await exchange(client, server, messages);
      });
    }
  }

  it('property: messages of any size from 0 to 8 MiB arrive intact both ways, directly and through a proxy', { timeout: 60_000 }, async () => {
    const base = randomBytes(8 * MiB + 4);
    const pairs = { direct: await flowPair('direct'), 'through a proxy': await flowPair('through a proxy') };
    // Sizes near the powers of two (the stall) are drawn as often as arbitrary ones.
    const size = fc.oneof(
      fc.integer({ min: 0, max: 8 * MiB }),
      fc.tuple(fc.integer({ min: 18, max: 23 }), fc.integer({ min: -2, max: 2 })).map(([exp, delta]) => Math.min(8 * MiB, Math.max(0, 2 ** exp + delta))),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<Route>('direct', 'through a proxy'),
        fc.array(size, { minLength: 1, maxLength: 3 }),
        fc.array(size, { minLength: 1, maxLength: 3 }),
        async (route, forward, backward) => {
          const { client, server } = pairs[route];
          const messages = (sizes: number[]): Buffer[] => sizes.map((n, i) => base.subarray(i, i + n));
          await Promise.all([exchange(client, server, messages(forward)), exchange(server, client, messages(backward))]);
        },
      ),
      { numRuns: 20 },
    );
  });
});
