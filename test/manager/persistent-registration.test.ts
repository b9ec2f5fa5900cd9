import { describe, expect, it } from 'vitest';
import { PersistentRegistration, backoffDelay } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';

describe('backoffDelay', () => {
  it('retries at once first, then doubles with equal jitter up to the cap', () => {
    expect(backoffDelay(1)).toBe(0);
    expect(backoffDelay(2, {}, () => 0)).toBe(50);
    expect(backoffDelay(2, {}, () => 1)).toBe(100);
    expect(backoffDelay(5, {}, () => 0)).toBe(400);
    expect(backoffDelay(5, {}, () => 1)).toBe(800);
    expect(backoffDelay(40, {}, () => 1)).toBe(30_000);
    expect(backoffDelay(40, { maxDelay: 5_000 }, () => 0)).toBe(2_500);
  });
});

describe('PersistentRegistration', () => {
  const net = useNetwork();

  it('registers again by itself when the proxy comes back on the same address, and stops on close()', async () => {
    const first = await net.proxy();
    const server = net.manager();
    const persistent = await PersistentRegistration.start(server, 'main', first.endpoint);
    const endpoint = persistent.endpoint;
    const lost = new Promise<Error>((resolve) => persistent.once('lost', resolve));
    const registered = new Promise<{ attempt: number }>((resolve) => persistent.once('registered', resolve));
    await first.close();
    expect(await lost).toMatchObject({ code: 'ERR_GOING_AWAY' });
    expect(persistent.isRegistered).toBe(false);

    // A restarted proxy keeps its identity (its key file), so the endpoint clients pin stays valid.
    const second = await net.proxy({ port: first.port, identity: first.identity });
    expect((await registered).attempt).toBeGreaterThanOrEqual(1);
    expect(persistent.endpoint).toBe(endpoint);
    expect(second.stats().registrations).toBe(1);

    persistent.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(second.stats().registrations).toBe(0);
  });

  it('fails fast when the first registration cannot be made', async () => {
    const server = net.manager();
    await expect(PersistentRegistration.start(server, 'main', '127.0.0.1:1', { allowUnpinnedProxy: true })).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' });
  });
});
