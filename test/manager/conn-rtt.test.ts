import { describe, expect, it } from 'vitest';
import { useNetwork } from '../fixtures.js';
import { waitFor } from '../helpers.js';

describe('flow.conn.rtt', () => {
  const net = useNetwork({ checkLeaks: true });

  it('knows the round-trip time of a VC as soon as it is dialed and accepted', async () => {
    const server = net.manager();
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager();
    const flow = await client.dial(endpoint);
    expect(flow.conn.rtt).toBeTypeOf('number');
    flow.write('x');
    const accepted = await server.accept();
    expect(accepted.conn.rtt).toBeTypeOf('number');
    expect(accepted.conn.rtt).toBeLessThan(1000);
  });

  it('measures it with a ping at VC setup when there is no secure handshake to time', async () => {
    const server = net.manager({ encryption: false });
    const endpoint = await server.listen('127.0.0.1:0');
    const client = net.manager({ encryption: false });
    const flow = await client.dial(endpoint);
    // The keepalive interval is 15 s: only the setup ping can answer within the wait.
    await waitFor(() => flow.conn.rtt !== undefined, 'the VC to know its round-trip time', 1000);
  });
});
