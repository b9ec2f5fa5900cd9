import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { MAX_DATA_PLAINTEXT, MAX_REASON_PLAINTEXT, SegmentReader, SegmentType, TAG_SIZE, segmentHeader } from '../../src/secure/framing.js';

type Event = ['handshake', Buffer] | ['sealed', SegmentType, Buffer, Buffer];

/** Decodes `chunks` and merges adjacent handshake bytes, which the reader may split anywhere. */
function decode(chunks: Buffer[]): Event[] {
  const events: Event[] = [];
  const reader = new SegmentReader({
    handshake: (bytes) => {
      const last = events.at(-1);
      if (last?.[0] === 'handshake') last[1] = Buffer.concat([last[1], bytes]);
      else events.push(['handshake', Buffer.from(bytes)]);
    },
    sealed: (type, header, body) => events.push(['sealed', type, Buffer.from(header), Buffer.concat(body)]),
  });
  for (const chunk of chunks) reader.push(chunk);
  return events;
}

const segment = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => ({ type: SegmentType.Handshake, body: Buffer.from(b) })),
  fc.uint8Array({ minLength: TAG_SIZE, maxLength: 300 }).map((b) => ({ type: SegmentType.Data, body: Buffer.from(b) })),
  fc.constantFrom(SegmentType.Accept, SegmentType.End).map((type) => ({ type, body: Buffer.alloc(TAG_SIZE, 7) })),
  fc
    .tuple(fc.constantFrom(SegmentType.Unauthorized, SegmentType.Unauthenticated), fc.uint8Array({ minLength: TAG_SIZE, maxLength: 60 }))
    .map(([type, b]) => ({ type, body: Buffer.from(b) })),
);

describe('SegmentReader', () => {
  test('any split of the byte stream decodes to the same segments, sealed ones whole with their header', () => {
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1 }), (segments, cuts) => {
        const bytes = Buffer.concat(segments.flatMap(({ type, body }) => [segmentHeader(type, body.length), body]));
        const chunks: Buffer[] = [];
        for (let offset = 0, i = 0; offset < bytes.length; i++) {
          const size = cuts[i % cuts.length];
          chunks.push(bytes.subarray(offset, offset + size));
          offset += size;
        }
        const expected: Event[] = [];
        for (const { type, body } of segments) {
          const last = expected.at(-1);
          if (type !== SegmentType.Handshake) expected.push(['sealed', type, segmentHeader(type, body.length), body]);
          else if (last?.[0] === 'handshake') last[1] = Buffer.concat([last[1], body]);
          else expected.push(['handshake', body]);
        }
        expect(decode(chunks)).toEqual(expected);
        expect(decode([bytes])).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  test('an unknown segment type is a protocol error that says the peer speaks something else', () => {
    expect(() => decode([Buffer.from([9, 0, 0, 0])])).toThrow(
      expect.objectContaining({ code: 'ERR_PROTOCOL', message: 'secure channel: the peer does not speak this protocol (segment type 9 is unknown)' }),
    );
  });

  test.each([
    [SegmentType.Data, MAX_DATA_PLAINTEXT + TAG_SIZE + 1, 'ERR_FRAME_TOO_LARGE'],
    [SegmentType.Unauthorized, MAX_REASON_PLAINTEXT + TAG_SIZE + 1, 'ERR_FRAME_TOO_LARGE'],
    [SegmentType.Accept, TAG_SIZE + 1, 'ERR_FRAME_TOO_LARGE'],
    [SegmentType.End, TAG_SIZE - 1, 'ERR_PROTOCOL'],
  ])('a %s record declaring a %d-byte body is refused from its header, before its body is buffered', (type, length, code) => {
    expect(() => decode([segmentHeader(type, length)])).toThrow(expect.objectContaining({ code }));
  });
});
