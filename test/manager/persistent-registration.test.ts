import { describe, expect, it } from 'vitest';
import { Identity, PersistentRegistration, backoffDelay } from '../../src/index.js';
import { delay } from '../helpers.js';
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

  it('stops, and says so, when another process registers the same routing id; the other keeps it', async () => {
    const proxy = await net.proxy();
    const identity = Identity.generate();
    const first = await PersistentRegistration.start(net.manager({ identity }), 'main', proxy.endpoint);
    const conflict = new Promise<Error>((resolve) => first.once('conflict', resolve));
    const second = await PersistentRegistration.start(net.manager({ identity }), 'main', proxy.endpoint);
    const err = await conflict;
    expect(err).toMatchObject({ code: 'ERR_SUPERSEDED', reason: 6 });
    expect(err.message).toMatch(new RegExp(`^another process with this identity registered on ${proxy.endpoint.replace(/[./]/g, '\\$&')} from 127\\.0\\.0\\.1:\\d+$`));
    expect(await first.done).toBe(err);
    expect(first.isRegistered).toBe(false);
    // Neither registers back: the one that stopped stays stopped.
    await delay(500);
    expect(second.isRegistered).toBe(true);
    expect(proxy.stats().registrations).toBe(1);
    second.close();
    expect(await second.done).toBeUndefined();
  });

  it('fails fast when the first registration cannot be made', async () => {
    const server = net.manager();
    await expect(PersistentRegistration.start(server, 'main', '127.0.0.1:1', { allowUnpinnedProxy: true })).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' });
  });
});
