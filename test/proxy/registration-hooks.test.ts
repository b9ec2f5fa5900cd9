import { describe, expect, it } from 'vitest';
import { Reason } from '../../src/index.js';
import type { RegistrationHook, RegistrationVerdict } from '../../src/proxy/options.js';
import { composeRegistrationHooks } from '../../src/proxy/registration-hooks.js';
import { useNetwork } from '../fixtures.js';
import { waitFor } from '../helpers.js';

const net = useNetwork({ checkLeaks: true });

/** A hook that records what it is told, answering with `verdict` (a promise makes it asynchronous). */
function recorder(verdict: () => RegistrationVerdict | Promise<RegistrationVerdict>): RegistrationHook & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    register(routingId) {
      calls.push(`register ${routingId.slice(0, 4)}`);
      return verdict();
    },
    released(routingId) {
      calls.push(`released ${routingId.slice(0, 4)}`);
    },
  };
}

describe('registration hooks', () => {
  it('compose: documents merge in order, and a refusal releases the hooks that had accepted', async () => {
    const a = recorder(() => ({ document: { a: 1, shared: 'a' } }));
    const b = recorder(() => Promise.resolve({ document: { b: 2, shared: 'b' } }));
    const rid = 'ab'.repeat(16);
    expect(await composeRegistrationHooks(a, b).register(rid, {}, {})).toEqual({ document: { a: 1, b: 2, shared: 'b' } });
    // Synchronous hooks compose synchronously.
    expect(composeRegistrationHooks(a, a).register(rid, {}, {})).toEqual({ document: { a: 1, shared: 'a' } });
    const no = recorder(() => ({ refused: { reason: Reason.Refused, message: 'no' } }));
    const later = recorder(() => ({ document: {} }));
    expect(await composeRegistrationHooks(a, b, no, later).register(rid, {}, {})).toEqual({ refused: { reason: Reason.Refused, message: 'no' } });
    expect(a.calls.slice(-1)).toEqual(['released abab']);
    expect(b.calls.slice(-1)).toEqual(['released abab']);
    expect(later.calls).toEqual([]);
  });

  it('an asynchronous verdict: the registration waits for it, and one whose connection closed meanwhile is released, not registered', async () => {
    let settle!: (verdict: RegistrationVerdict) => void;
    const hook = recorder(() => new Promise<RegistrationVerdict>((resolve) => (settle = resolve)));
    const proxy = await net.proxy({ registrationHook: hook });
    const server = net.manager();
    const pending = server.proxyListen('proxy', proxy.endpoint, { hostname: 'slow' });
    pending.catch(() => undefined);
    await waitFor(() => hook.calls.length === 1, 'the hook to be asked');
    expect(proxy.isRegistered(server.routingId)).toBe(false);
    await server.close();
    await waitFor(() => proxy.stats().connections === 0, 'the connection to close');
    settle({ document: { late: true } });
    await waitFor(() => hook.calls.length === 2, 'the abandoned registration to be released');
    expect(hook.calls).toEqual([`register ${server.routingId.toString().slice(0, 4)}`, `released ${server.routingId.toString().slice(0, 4)}`]);
    expect(proxy.isRegistered(server.routingId)).toBe(false);

    // And one that stays: registered when the verdict comes, released when it ends.
    const second = net.manager();
    const registering = second.proxyListen('proxy', proxy.endpoint, { hostname: 'slow' });
    await waitFor(() => hook.calls.length === 3, 'the hook to be asked');
    settle({ document: { hostnames: ['x.example'] } });
    const registration = await registering;
    expect(registration.ingress.hostnames).toEqual(['x.example']);
    expect(proxy.isRegistered(second.routingId)).toBe(true);
    registration.close();
    await waitFor(() => hook.calls.length === 4, 'the registration to be released');
    expect(hook.calls[3]).toBe(`released ${second.routingId.toString().slice(0, 4)}`);
  });

  it('an asynchronous refusal reaches the server as a RegistrationError', async () => {
    const hook = recorder(() => Promise.resolve({ refused: { reason: Reason.Limit, message: 'not now' } }));
    const proxy = await net.proxy({ registrationHook: hook });
    await expect(net.manager().proxyListen('proxy', proxy.endpoint, { hostname: 'x' })).rejects.toMatchObject({ code: 'ERR_REGISTRATION_REFUSED', message: expect.stringContaining('not now') });
  });
});
