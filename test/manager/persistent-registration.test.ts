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
    expect(backoffDelay(40, { maxDelay: 5_000 }, () => 0)).toBe(2_500);
  });

  it('by default never waits more than 2 s, however long the outage, and never less than 1 s once capped', () => {
    expect(backoffDelay(6, {}, () => 1)).toBe(1_600);
    for (const attempt of [7, 8, 40, 1_000, 1e6]) {
      expect(backoffDelay(attempt, {}, () => 0)).toBe(1_000);
      expect(backoffDelay(attempt, {}, () => 1)).toBe(2_000);
    }
    const waits = Array.from({ length: 1000 }, () => backoffDelay(1_000));
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(1_000);
    expect(Math.max(...waits)).toBeLessThanOrEqual(2_000);
    // Spread over the whole second: no tenth of it holds more than a fifth of the attempts.
    const tenths = new Array(10).fill(0);
    for (const wait of waits) tenths[Math.min(9, Math.floor((wait - 1_000) / 100))]++;
    expect(Math.max(...tenths)).toBeLessThan(200);
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

  it('brings 100 servers back within 3 s of their proxy returning from a 6 s outage, spread out rather than all at once', async () => {
    const first = await net.proxy();
    const fleet = await Promise.all(Array.from({ length: 100 }, (_, i) => PersistentRegistration.start(net.manager(), `s${i}`, first.endpoint)));
    const backAt: number[] = [];
    for (const persistent of fleet) persistent.once('registered', () => backAt.push(Date.now()));
    await first.close({ drainTimeout: 0 });
    await delay(6_000);
    const second = await net.proxy({ port: first.port, identity: first.identity });
    const restartedAt = Date.now();
    while (backAt.length < fleet.length && Date.now() - restartedAt < 5_000) await delay(50);
    const offsets = backAt.map((t) => t - restartedAt).sort((a, b) => a - b);
    const perTenth = new Array(30).fill(0);
    for (const offset of offsets) perTenth[Math.min(29, Math.floor(offset / 100))]++;
    console.log(`100 servers back ${offsets[0]}-${offsets.at(-1)} ms after the restart; most in one 100 ms slot: ${Math.max(...perTenth)}`);
    expect(offsets).toHaveLength(100);
    expect(offsets.at(-1)).toBeLessThan(3_000);
    expect(second.stats().registrations).toBe(100);
    // Lockstep would put them all in one slot; uniform over the 1-2 s jitter gives about 5 a slot.
    expect(Math.max(...perTenth)).toBeLessThan(30);
    for (const persistent of fleet) persistent.close();
  });

  it('fails fast when the first registration cannot be made', async () => {
    const server = net.manager();
    await expect(PersistentRegistration.start(server, 'main', '127.0.0.1:1', { allowUnpinnedProxy: true })).rejects.toMatchObject({ code: 'ERR_UNREACHABLE' });
  });
});
