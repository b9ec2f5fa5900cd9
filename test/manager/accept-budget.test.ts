import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Manager, type Flow } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';
import { writeRandom } from '../helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const FLOWS = 400;
const PER_FLOW = 256 * KiB;

/** heapUsed + arrayBuffers after a full collection. */
function heldAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('this test measures memory and needs node --expose-gc (vitest.config.ts sets it)');
  gc();
  gc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

/** Everything the peer sends until its FIN, without the for-await iterator, which would reset a flow still open this way. */
function readToEnd(flow: Flow): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    flow.on('data', (chunk: Buffer) => chunks.push(chunk));
    flow.once('end', () => resolve(Buffer.concat(chunks)));
    flow.once('error', reject);
  });
}

/**
 * Settles when the flow has sent all it was given and its FIN, or failed. The 'error' listener
 * stays, since the reset can come after the FIN went out; the error is read from `errored`.
 */
function outcome(flow: Flow): Promise<void> {
  return new Promise((resolve) => {
    flow.once('finish', resolve);
    flow.once('error', () => resolve());
  });
}

describe('flows waiting for accept', () => {
  const net = useNetwork({ checkLeaks: true });

  it('400 flows sending 256 KiB each to a server that never accepts: it holds under 16 MiB more, resets the excess, and a flow accepted later carries 8 MiB', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager();
    const payload = randomBytes(PER_FLOW);
    const payloadDigest = createHash('sha256').update(payload).digest('hex');

    // The VC (handshake, TLS state, buffers) exists before the baseline: what is measured is the flows.
    const first = await client.dial(endpoint);
    const before = heldAfterGc();

    const flows = [first];
    for (let i = 1; i < FLOWS; i++) flows.push(await client.dial(endpoint));
    const outcomes = flows.map(outcome);
    for (const flow of flows) flow.end(payload);
    await Promise.all(outcomes);
    // The server answers this ping after it has handled every frame sent before it, and any RST
    // it sent for them arrives here before the answer; the streams' 'error' events follow on the next tick.
    await first.conn.ping();
    await new Promise((resolve) => setImmediate(resolve));
    const resets = flows.filter((flow) => flow.errored !== null);
    for (const flow of resets) expect(flow.errored).toMatchObject({ code: 'ERR_STREAM_RESET' });

    const grown = heldAfterGc() - before;
    const survivors = FLOWS - resets.length;
    console.log(
      `${FLOWS} unaccepted flows x 256 KiB through a Manager pair: the process holds ${(grown / MiB).toFixed(2)} MiB more; ` +
        `${resets.length} flows reset, ${survivors} waiting for accept`,
    );
    expect(grown).toBeLessThan(16 * MiB);
    expect(resets.length).toBeGreaterThan(300);
    expect(survivors).toBeGreaterThan(0);

    // The flows that were kept deliver all their bytes once accepted.
    for (let i = 0; i < survivors; i++) {
      const flow = await server.accept();
      const received = await readToEnd(flow);
      expect(received.length).toBe(PER_FLOW);
      expect(createHash('sha256').update(received).digest('hex')).toBe(payloadDigest);
      flow.end();
    }

    // With the queue drained, a new flow is accepted and works both ways. It carries twice the
    // budget: once accepted, its bytes do not count and its window is returned as it is read.
    const fresh = await client.dial(endpoint);
    const sent = writeRandom(fresh, 8 * MiB);
    const accepted = await server.accept();
    const received = await readToEnd(accepted);
    expect(received.length).toBe(8 * MiB);
    expect(createHash('sha256').update(received).digest('hex')).toBe(await sent);
    accepted.end('world');
    expect((await readToEnd(fresh)).toString()).toBe('world');
  });

  it('refuses a negative or fractional budget or pending limit when the manager is made', () => {
    expect(() => new Manager({ pendingAcceptBudget: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => new Manager({ maxPendingAccept: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });
});
