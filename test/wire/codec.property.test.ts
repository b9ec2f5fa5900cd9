import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FrameDecoder, FrameType, encodeFrame, encodePreface, payloadOf, type Frame } from '../../src/wire/index.js';

const CONNECTION_TYPES = [
  FrameType.Hello,
  FrameType.Proof,
  FrameType.Register,
  FrameType.RegisterOk,
  FrameType.RegisterError,
  FrameType.Unregister,
  FrameType.Ping,
  FrameType.Pong,
  FrameType.GoAway,
  FrameType.StatusRequest,
  FrameType.StatusResponse,
];
const VC_TYPES = [FrameType.OpenVc, FrameType.VcAccepted, FrameType.VcRejected, FrameType.Data, FrameType.Credit, FrameType.CloseVc];

/** Payload lengths each type allows: [min, max] with max undefined where only maxPayload bounds it. */
const LENGTHS: Partial<Record<FrameType, [number, number?]>> = {
  [FrameType.Hello]: [96, 96],
  [FrameType.Proof]: [64, 64],
  [FrameType.RegisterOk]: [0, 0],
  [FrameType.Unregister]: [0, 0],
  [FrameType.RegisterError]: [2],
  [FrameType.VcRejected]: [2],
  [FrameType.CloseVc]: [2],
  [FrameType.GoAway]: [2],
  [FrameType.OpenVc]: [68, 100],
  [FrameType.Register]: [0, 32],
  [FrameType.StatusRequest]: [0, 32],
  [FrameType.VcAccepted]: [36, 36],
  [FrameType.Credit]: [4, 4],
  [FrameType.Ping]: [8, 8],
  [FrameType.Pong]: [8, 8],
};

interface Spec {
  type: FrameType;
  vci: number;
  payload: Buffer;
}

/** Deterministic bytes from a seed (xorshift32): far cheaper than asking fast-check for 300 KiB arrays. */
function bytes(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const lengthArb = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 64 }), weight: 6 },
  { arbitrary: fc.integer({ min: 0, max: 70_000 }), weight: 3 },
  { arbitrary: fc.integer({ min: 0, max: 300 * 1024 }), weight: 1 },
);

const frameArb: fc.Arbitrary<Spec> = fc
  .record({
    type: fc.constantFrom(...CONNECTION_TYPES, ...VC_TYPES),
    vci: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 0xffffffff })),
    length: lengthArb,
    seed: fc.integer(),
  })
  .map(({ type, vci, length, seed }) => {
    const [min, max] = LENGTHS[type] ?? [0];
    const len = max !== undefined ? max : Math.max(min, length);
    const payload = bytes(len, seed);
    if (type === FrameType.Credit) payload[3] |= 1; // a zero grant is a protocol error
    return { type, vci: VC_TYPES.includes(type) ? vci : 0, payload };
  });

/** Split `total` bytes at the given cut points, or into pieces of `step` bytes. */
const splitArb = fc.oneof(
  fc.record({ kind: fc.constant('cuts' as const), cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }) }),
  fc.record({ kind: fc.constant('step' as const), step: fc.integer({ min: 1, max: 13 }) }),
);

/** Chunks with memory of their own, so a view can be told from a copy by its ArrayBuffer. */
function split(stream: Buffer, how: { kind: 'cuts'; cuts: number[] } | { kind: 'step'; step: number }): Buffer[] {
  let bounds: number[];
  if (how.kind === 'step' && stream.length <= 64 * 1024) {
    bounds = [];
    for (let i = how.step; i < stream.length; i += how.step) bounds.push(i);
  } else {
    const cuts = how.kind === 'cuts' ? how.cuts : [0.5];
    bounds = [...new Set(cuts.map((f) => Math.floor(f * stream.length)))].sort((a, b) => a - b);
  }
  const chunks: Buffer[] = [];
  let start = 0;
  for (const end of [...bounds, stream.length]) {
    if (end <= start) continue;
    const c = Buffer.allocUnsafeSlow(end - start);
    stream.copy(c, 0, start, end);
    chunks.push(c);
    start = end;
  }
  return chunks;
}

describe('frame codec (property)', () => {
  it('decodes any split of any frame sequence to the frames encoded, without copying payloads', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 16 }), fc.boolean(), splitArb, (specs, withPreface, how) => {
        const pieces: Buffer[] = withPreface ? [encodePreface()] : [];
        // Where each payload sits in the stream, to know which chunks it must be a view into.
        const payloadAt: number[] = [];
        let pos = pieces.length ? pieces[0].length : 0;
        for (const s of specs) {
          const encoded = encodeFrame(s.type, s.vci, s.payload);
          pieces.push(...encoded);
          payloadAt.push(pos + encoded[0].length);
          pos += encoded[0].length + s.payload.length;
        }
        const stream = Buffer.concat(pieces);
        const chunks = split(stream, how);
        const chunkStart: number[] = [];
        let at = 0;
        for (const c of chunks) {
          chunkStart.push(at);
          at += c.length;
        }

        const frames: Frame[] = [];
        const prefaces: unknown[] = [];
        const decoder = new FrameDecoder({
          expectPreface: withPreface,
          onPreface: (p) => prefaces.push(p),
          onFrame: (f) => frames.push(f),
        });
        for (const c of chunks) decoder.push(c);

        expect(decoder.bufferedBytes).toBe(0);
        expect(prefaces).toEqual(withPreface ? [{ minVersion: 2, maxVersion: 2, version: 2 }] : []);
        expect(frames.length).toBe(specs.length);
        // Walk chunks and payloads together: each part must be a view into the one chunk holding
        // that stretch of the payload (checked without expect() per part, which is slow).
        const wrong: string[] = [];
        let k = 0;
        specs.forEach((s, i) => {
          const f = frames[i];
          expect([f.type, f.vci, f.flags, f.length]).toEqual([s.type, s.vci, 0, s.payload.length]);
          expect(payloadOf(f).equals(s.payload)).toBe(true);
          const start = payloadAt[i];
          const end = start + s.payload.length;
          let j = 0;
          for (let pos = start; pos < end; j++) {
            while (chunkStart[k] + chunks[k].length <= pos) k++;
            const part = f.parts[j];
            if (part?.buffer !== chunks[k].buffer || part.byteOffset !== pos - chunkStart[k]) wrong.push(`frame ${i} part ${j}`);
            pos = Math.min(end, chunkStart[k] + chunks[k].length);
          }
          if (f.parts.length !== j) wrong.push(`frame ${i} has ${f.parts.length} parts, expected ${j}`);
        });
        expect(wrong).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });
});
