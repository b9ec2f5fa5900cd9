import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { FrameReader, FrameType, MAX_CONTROL_PAYLOAD, frameHeader } from '../../src/secure/framing.js';

type Event = ['data', Buffer] | ['control', FrameType, Buffer];

/** Decodes `chunks` and merges adjacent data payloads, which the reader may split anywhere. */
function decode(chunks: Buffer[]): Event[] {
  const events: Event[] = [];
  const reader = new FrameReader({
    data: (payload) => {
      const last = events.at(-1);
      if (last?.[0] === 'data') last[1] = Buffer.concat([last[1], payload]);
      else events.push(['data', Buffer.from(payload)]);
    },
    control: (type, payload) => events.push(['control', type, Buffer.from(payload)]),
  });
  for (const chunk of chunks) reader.push(chunk);
  return events;
}

const frame = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((p) => ({ type: FrameType.Data, payload: Buffer.from(p) })),
  fc.constantFrom(FrameType.Accept, FrameType.End).map((type) => ({ type, payload: Buffer.alloc(0) })),
  fc
    .tuple(fc.constantFrom(FrameType.Unauthorized, FrameType.Unauthenticated), fc.uint8Array({ maxLength: 40 }))
    .map(([type, p]) => ({ type, payload: Buffer.from(p) })),
);

describe('FrameReader', () => {
  test('any split of the byte stream decodes to the same frames', () => {
    fc.assert(
      fc.property(fc.array(frame, { minLength: 1, maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1 }), (frames, cuts) => {
        const bytes = Buffer.concat(frames.flatMap(({ type, payload }) => [frameHeader(type, payload.length), payload]));
        const chunks: Buffer[] = [];
        for (let offset = 0, i = 0; offset < bytes.length; i++) {
          const size = cuts[i % cuts.length];
          chunks.push(bytes.subarray(offset, offset + size));
          offset += size;
        }
        expect(decode(chunks)).toEqual(decode([bytes]));
        const expected: Event[] = [];
        for (const { type, payload } of frames) {
          const last = expected.at(-1);
          if (type !== FrameType.Data) expected.push(['control', type, payload]);
          else if (last?.[0] === 'data') last[1] = Buffer.concat([last[1], payload]);
          else expected.push(['data', payload]);
        }
        expect(decode([bytes])).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  test('an unknown frame type is a protocol error', () => {
    expect(() => decode([Buffer.from([9, 0, 0, 0])])).toThrow(expect.objectContaining({ code: 'ERR_PROTOCOL', message: 'secure channel: unknown frame type 9' }));
  });

  test('an oversized control frame is refused from its header, before its payload is buffered', () => {
    expect(() => decode([frameHeader(FrameType.Unauthorized, MAX_CONTROL_PAYLOAD + 1)])).toThrow(expect.objectContaining({ code: 'ERR_FRAME_TOO_LARGE' }));
  });
});
