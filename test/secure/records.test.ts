import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { SegmentType, TAG_SIZE, segmentHeader } from '../../src/secure/framing.js';
import { RecordOpener, RecordSealer, aeadForSuite } from '../../src/secure/records.js';

const SUITES = ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256'] as const;

function sealed(sealer: RecordSealer, plaintext: Buffer): { header: Buffer; body: Buffer[] } {
  const header = segmentHeader(SegmentType.Data, plaintext.length + TAG_SIZE);
  return { header, body: sealer.seal(header, [plaintext]) };
}

describe.each(SUITES)('records under %s', (suite) => {
  const aead = aeadForSuite(suite);
  const secret = randomBytes(32);

  test('open what was sealed, in order, whatever the split of body and tag', () => {
    const sealer = new RecordSealer(aead, secret);
    const opener = new RecordOpener(aead, secret);
    for (const size of [0, 1, 100, 65536]) {
      const plaintext = randomBytes(size);
      const { header, body } = sealed(sealer, plaintext);
      const bytes = Buffer.concat(body);
      expect(bytes.length).toBe(size + TAG_SIZE);
      // Split inside the tag, so the tag spans two parts.
      const cut = Math.max(0, bytes.length - 5);
      expect(Buffer.concat(opener.open(header, [bytes.subarray(0, cut), bytes.subarray(cut)]))).toEqual(plaintext);
    }
  });

  test('refuse a flipped bit, an altered header, a replayed or reordered record, and the other direction', () => {
    const tampered = (alter: (record: { header: Buffer; bytes: Buffer }) => void): void => {
      const opener = new RecordOpener(aead, secret);
      const record = sealed(new RecordSealer(aead, secret), randomBytes(1000));
      const altered = { header: Buffer.from(record.header), bytes: Buffer.concat(record.body) };
      alter(altered);
      expect(() => opener.open(altered.header, [altered.bytes])).toThrow(expect.objectContaining({ code: 'ERR_INTEGRITY' }));
    };
    tampered(({ bytes }) => (bytes[500] ^= 1));
    tampered(({ bytes }) => (bytes[bytes.length - 1] ^= 0x80));
    tampered(({ header }) => (header[0] = SegmentType.End));

    const sealer = new RecordSealer(aead, secret);
    const first = sealed(sealer, Buffer.from('first'));
    const second = sealed(sealer, Buffer.from('second'));
    const opener = new RecordOpener(aead, secret);
    expect(() => opener.open(second.header, second.body)).toThrow(expect.objectContaining({ code: 'ERR_INTEGRITY' }));
    const replay = new RecordOpener(aead, secret);
    replay.open(first.header, first.body);
    expect(() => replay.open(first.header, first.body)).toThrow(expect.objectContaining({ code: 'ERR_INTEGRITY' }));
    const otherDirection = new RecordOpener(aead, randomBytes(32));
    expect(() => otherDirection.open(first.header, first.body)).toThrow(expect.objectContaining({ code: 'ERR_INTEGRITY' }));
  });

  test('both ends move to a new key after the same number of records', () => {
    const plaintext = Buffer.from('the same plaintext every time');
    const sealer = new RecordSealer(aead, secret, 3);
    const inStep = new RecordOpener(aead, secret, 3);
    const neverRekeys = new RecordOpener(aead, secret);
    const records = Array.from({ length: 8 }, () => sealed(sealer, plaintext));
    for (const { header, body } of records) expect(Buffer.concat(inStep.open(header, body))).toEqual(plaintext);
    for (const { header, body } of records.slice(0, 3)) neverRekeys.open(header, body);
    // The fourth record is sealed under the next key, which an opener that never moves on does not have.
    expect(() => neverRekeys.open(records[3].header, records[3].body)).toThrow(expect.objectContaining({ code: 'ERR_INTEGRITY' }));
    // Nor is it the old key with its counter back at zero, which would reuse record 0's nonce.
    expect(Buffer.concat(records[3].body)).not.toEqual(Buffer.concat(records[0].body));
  });
});

test('a suite with no record protection here is refused', () => {
  expect(() => aeadForSuite('TLS_AES_128_CCM_SHA256')).toThrow(expect.objectContaining({ code: 'ERR_PROTOCOL' }));
});
