import { createHash, createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Identity, RoutingId } from '../../src/id/index.js';

// RFC 8032 section 7.1, test 1: a fixed key whose public half is published, so the derivation is
// checked against numbers that do not come from our own code.
const RFC8032_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const RFC8032_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'expected an error').toBeInstanceOf(Error);
  expect((thrown as { code?: string }).code).toBe(code);
  if (message) expect((thrown as Error).message).toMatch(message);
}

describe('RoutingId', () => {
  it('is the first 16 bytes of SHA-256 over the raw public key (fixed vector)', () => {
    const raw = Buffer.from(RFC8032_PUBLIC, 'hex');
    const expected = createHash('sha256').update(raw).digest('hex').slice(0, 32);
    expect(RoutingId.fromPublicKey(raw).toString()).toBe(expected);
    expect(expected).toBe('21fe31dfa154a261626bf854046fd227');
  });

  it('is derived the same way by an Identity built from a fixed PKCS8 key', () => {
    const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(RFC8032_SEED, 'hex')]);
    const id = Identity.fromPrivateKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }));
    expect(id.publicKey.toString('hex')).toBe(RFC8032_PUBLIC);
    expect(id.routingId.toString()).toBe('21fe31dfa154a261626bf854046fd227');
  });

  it('round-trips through parse/toString and fromBytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const rid = RoutingId.fromBytes(bytes);
        const hex = rid.toString();
        expect(hex).toMatch(/^[0-9a-f]{32}$/);
        expect(RoutingId.parse(hex).equals(rid)).toBe(true);
        expect(RoutingId.parse(hex.toUpperCase()).equals(rid)).toBe(true);
        expect(rid.bytes.equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });

  it('copies its input and owns its memory', () => {
    const src = Buffer.alloc(16, 7);
    const rid = RoutingId.fromBytes(src);
    src[0] = 9;
    expect(rid.bytes[0]).toBe(7);
    expect(rid.bytes.byteLength).toBe(rid.bytes.buffer.byteLength);
  });

  it('has a null value that is all zeros', () => {
    expect(RoutingId.NULL.isNull()).toBe(true);
    expect(RoutingId.NULL.toString()).toBe('0'.repeat(32));
    expect(RoutingId.parse('0'.repeat(32)).isNull()).toBe(true);
    expect(RoutingId.parse('0'.repeat(31) + '1').isNull()).toBe(false);
    expect(RoutingId.SIZE).toBe(16);
  });

  it('serialises to JSON as hex', () => {
    const rid = RoutingId.parse('ab'.repeat(16));
    expect(JSON.stringify({ rid })).toBe(`{"rid":"${'ab'.repeat(16)}"}`);
  });

  it('rejects bad strings naming what is wrong', () => {
    expectCode(() => RoutingId.parse('abc'), 'ERR_INVALID_RID', /invalid routing id "abc": expected 32 hex characters, got 3/);
    expectCode(() => RoutingId.parse(''), 'ERR_INVALID_RID', /got 0/);
    expectCode(() => RoutingId.parse('a'.repeat(33)), 'ERR_INVALID_RID', /got 33/);
    expectCode(() => RoutingId.parse('a'.repeat(30) + 'zz'), 'ERR_INVALID_RID', /"z" at position 31 is not a hex digit/);
    expectCode(() => RoutingId.parse(' '.repeat(32)), 'ERR_INVALID_RID', /" " at position 1/);
  });

  it('rejects wrong byte lengths', () => {
    expectCode(() => RoutingId.fromBytes(new Uint8Array(15)), 'ERR_INVALID_RID', /16 bytes, got 15 bytes/);
    expectCode(() => RoutingId.fromPublicKey(Buffer.alloc(31)), 'ERR_INVALID_IDENTITY', /32 raw bytes, got 31 bytes/);
  });
});
