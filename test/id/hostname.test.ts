import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RoutingId } from '../../src/id/routing-id.js';
import { checkHostname, hostnameProblem, routingIdLabel, routingIdOfLabel } from '../../src/id/hostname.js';

describe('host names', () => {
  it("a routing id's name is its base32 (docs/protocol.md 10.1 vector), and names that routing id back", () => {
    const rid = RoutingId.parse('21fe31dfa154a261626bf854046fd227');
    expect(routingIdLabel(rid)).toBe('eh7ddx5bksrgcytl7bkai36se4');
    expect(routingIdOfLabel('eh7ddx5bksrgcytl7bkai36se4')?.equals(rid)).toBe(true);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const r = RoutingId.fromBytes(Buffer.from(bytes));
        const label = routingIdLabel(r);
        expect(label).toMatch(/^[a-z2-7]{26}$/);
        expect(routingIdOfLabel(label)?.equals(r)).toBe(true);
      }),
    );
    // Not canonical (padding bits set), too short, or not base32: no routing id.
    expect(routingIdOfLabel('eh7ddx5bksrgcytl7bkai36se7')).toBeUndefined();
    expect(routingIdOfLabel('eh7ddx5bksrgcytl7bkai36se')).toBeUndefined();
    expect(routingIdOfLabel('myapp')).toBeUndefined();
  });

  it('accepts DNS labels and refuses the rest, and the form of a routing id name', () => {
    for (const good of ['myapp', 'a', 'my-app-2', 'x'.repeat(63), '0day']) expect(hostnameProblem(good)).toBeUndefined();
    expect(hostnameProblem('')).toMatch(/must not be empty/);
    expect(hostnameProblem('x'.repeat(64))).toMatch(/at most 63/);
    expect(hostnameProblem('-app')).toMatch(/not a DNS label/);
    expect(hostnameProblem('app-')).toMatch(/not a DNS label/);
    expect(hostnameProblem('My_App')).toMatch(/not a DNS label/);
    expect(hostnameProblem('a.b')).toMatch(/not a DNS label/);
    expect(hostnameProblem('eh7ddx5bksrgcytl7bkai36se4')).toMatch(/form of a routing id's name/);
    expect(() => checkHostname('bad name')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });
});
