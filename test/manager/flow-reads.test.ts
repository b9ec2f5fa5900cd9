import { describe, expect, it } from 'vitest';
import { useNetwork } from '../fixtures.js';

describe('readMsg', () => {
  const net = useNetwork({ checkLeaks: true });

  it('serves many pending readMsg calls in order, without piling up listeners on the flow', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager();
    const flow = await client.dial(endpoint);
    await flow.writeMsg(Buffer.from('hello'));
    const accepted = await server.accept();
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      // One reply per request, read as they come: twenty reads wait at once.
      const replies = Array.from({ length: 20 }, () => flow.readMsg());
      expect(flow.listenerCount('error')).toBeLessThanOrEqual(1);
      for (let i = 0; i < 20; i++) await accepted.writeMsg(Buffer.from(`reply ${i}`));
      expect((await Promise.all(replies)).map(String)).toEqual(Array.from({ length: 20 }, (_, i) => `reply ${i}`));
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.name)).toEqual([]);
    expect(flow.listenerCount('error')).toBe(0);
    expect((await accepted.readMsg()).toString()).toBe('hello');
  });
});
