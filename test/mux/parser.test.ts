import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Flag, FrameParser, FrameType, encodeHeader, type FrameHeader, type YamuxStream } from '../../src/mux/index.js';
import { readAll, sessionPair, sha256, teardown, waitFor } from './helpers.js';

type ParseEvent =
  | { kind: 'frame'; header: FrameHeader }
  | { kind: 'data'; length: number; sha256: string }
  | { kind: 'dataEnd'; header: FrameHeader }
  | { kind: 'error'; code: string; message: string };

/** Parses `chunks` in order; adjacent body pieces are merged, since only their concatenation is meaningful. */
function parse(chunks: Iterable<Buffer>, pieces: Buffer[] = []): ParseEvent[] {
  const events: ParseEvent[] = [];
  let body: Buffer[] = [];
  const flushBody = (): void => {
    // A digest, not the bytes: deep-comparing megabytes of Buffer element by element is very slow.
    if (body.length > 0) {
      const bytes = Buffer.concat(body);
      events.push({ kind: 'data', length: bytes.length, sha256: sha256(bytes) });
    }
    body = [];
  };
  const parser = new FrameParser({
    frame: (header) => events.push({ kind: 'frame', header }),
    data: (piece) => {
      pieces.push(piece);
      body.push(piece);
    },
    dataEnd: (header) => {
      flushBody();
      events.push({ kind: 'dataEnd', header });
    },
    error: (err) => {
      flushBody();
      events.push({ kind: 'error', code: err.code, message: err.message });
    },
  });
  for (const chunk of chunks) parser.push(chunk);
  flushBody();
  return events;
}

function* split(bytes: Buffer, sizes: number[]): Generator<Buffer> {
  let offset = 0;
  for (let i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length];
    yield bytes.subarray(offset, offset + size);
    offset += size;
  }
}

function* oneByteAtATime(bytes: Buffer): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

const headers = (events: ParseEvent[]): FrameHeader[] => events.flatMap((e) => (e.kind === 'frame' ? [e.header] : []));

/**
 * Records the raw bytes a real session pair exchanges over TCP (both directions) while doing a
 * bit of everything: SYN/ACK, data below and above one window, FIN both ways, RST, Ping, GoAway.
 */
async function recordSession(): Promise<{ toServer: Buffer; toClient: Buffer }> {
  const pair = await sessionPair();
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  pair.server.on('data', (chunk: Buffer) => toServer.push(chunk));
  pair.client.on('data', (chunk: Buffer) => toClient.push(chunk));
  pair.b.on('stream', (stream: YamuxStream) => {
    stream.on('error', () => {});
    stream.pipe(stream);
  });
  pair.a.on('stream', (stream: YamuxStream) => stream.end('pushed by the server'));

  const echo = async (payload: Buffer): Promise<void> => {
    const stream = pair.a.openStream();
    const echoed = readAll(stream);
    stream.end(payload);
    expect((await echoed).equals(payload)).toBe(true);
  };
  await Promise.all([echo(Buffer.from('x')), echo(Buffer.alloc(100_000, 1)), echo(Buffer.alloc(600_000, 2))]);
  const reset = pair.a.openStream();
  reset.write('about to be reset');
  reset.destroy();
  const fromServer = pair.b.openStream();
  fromServer.end();
  expect((await readAll(fromServer)).toString()).toBe('pushed by the server');
  await pair.a.ping();
  await pair.b.ping();
  await waitFor(() => pair.a.streamCount === 0 && pair.b.streamCount === 0);
  await teardown(pair);
  return { toServer: Buffer.concat(toServer), toClient: Buffer.concat(toClient) };
}

describe('FrameParser', { timeout: 30_000 }, () => {
  let recorded: { toServer: Buffer; toClient: Buffer };
  beforeAll(async () => {
    recorded = await recordSession();
  });

  it('the recording holds every frame type and flag', () => {
    const all = [...headers(parse([recorded.toServer])), ...headers(parse([recorded.toClient]))];
    const has = (type: FrameType, flag: number): boolean => all.some((h) => h.type === type && (flag === 0 || (h.flags & flag) !== 0));
    expect(has(FrameType.Data, 0)).toBe(true);
    expect(has(FrameType.WindowUpdate, Flag.SYN)).toBe(true);
    expect(has(FrameType.WindowUpdate, Flag.ACK)).toBe(true);
    expect(has(FrameType.WindowUpdate, Flag.FIN)).toBe(true);
    expect(has(FrameType.WindowUpdate, Flag.RST)).toBe(true);
    expect(has(FrameType.Ping, Flag.SYN)).toBe(true);
    expect(has(FrameType.Ping, Flag.ACK)).toBe(true);
    expect(has(FrameType.GoAway, 0)).toBe(true);
    // The 600 kB echo needed several window updates beyond the SYN/ACK ones.
    expect(all.filter((h) => h.type === FrameType.WindowUpdate && h.flags === 0).length).toBeGreaterThan(3);
  });

  it('parses a recorded session identically whole and one byte at a time', () => {
    for (const bytes of [recorded.toServer, recorded.toClient]) {
      const whole = parse([bytes]);
      expect(whole.some((e) => e.kind === 'error')).toBe(false);
      expect(parse(oneByteAtATime(bytes))).toEqual(whole);
    }
    const dataBytes = parse([recorded.toServer]).reduce((n, e) => n + (e.kind === 'data' ? e.length : 0), 0);
    expect(dataBytes).toBe(1 + 100_000 + 600_000 + 'about to be reset'.length + 'pushed by the server'.length);
  });

  it('parses a recorded session identically under any chunking (property)', () => {
    const expected = parse([recorded.toServer]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 40 }), (sizes) => {
        expect(parse(split(recorded.toServer, sizes))).toEqual(expected);
      }),
      { numRuns: 100 },
    );
  });

  it('passes a body that lies inside one chunk on as a view of that chunk, not a copy', () => {
    const pieces: Buffer[] = [];
    parse([recorded.toServer], pieces);
    expect(pieces.length).toBeGreaterThan(0);
    for (const piece of pieces) {
      expect(piece.buffer).toBe(recorded.toServer.buffer);
      expect(piece.byteOffset).toBeGreaterThanOrEqual(recorded.toServer.byteOffset);
    }
  });

  it('decodes arbitrary frames, any flags, under any chunking (property)', () => {
    const frameArb = fc.oneof(
      fc.record({
        type: fc.constant(FrameType.Data),
        flags: fc.integer({ min: 0, max: 0xffff }),
        streamId: fc.integer({ min: 0, max: 0xffff_ffff }),
        body: fc.uint8Array({ maxLength: 3000 }),
      }),
      fc.record({
        type: fc.constantFrom(FrameType.WindowUpdate, FrameType.Ping, FrameType.GoAway),
        flags: fc.integer({ min: 0, max: 0xffff }),
        streamId: fc.integer({ min: 0, max: 0xffff_ffff }),
        length: fc.integer({ min: 0, max: 0xffff_ffff }),
      }),
    );
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 30 }), fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1 }), (frames, sizes) => {
        const expected: ParseEvent[] = [];
        const wire: Buffer[] = [];
        for (const frame of frames) {
          if ('body' in frame) {
            const header = { version: 0, type: frame.type, flags: frame.flags, streamId: frame.streamId, length: frame.body.length };
            wire.push(encodeHeader(frame.type, frame.flags, frame.streamId, frame.body.length), Buffer.from(frame.body));
            expected.push({ kind: 'frame', header });
            if (frame.body.length > 0) expected.push({ kind: 'data', length: frame.body.length, sha256: sha256(Buffer.from(frame.body)) });
            expected.push({ kind: 'dataEnd', header });
          } else {
            wire.push(encodeHeader(frame.type, frame.flags, frame.streamId, frame.length));
            expected.push({ kind: 'frame', header: { version: 0, type: frame.type, flags: frame.flags, streamId: frame.streamId, length: frame.length } });
          }
        }
        expect(parse(split(Buffer.concat(wire), sizes))).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('stops with ERR_MUX_PROTOCOL at a bad version or unknown type, even when the header is split', () => {
    const good = encodeHeader(FrameType.Ping, Flag.SYN, 0, 7);
    const badVersion = Buffer.from(encodeHeader(FrameType.Ping, Flag.SYN, 0, 7));
    badVersion[0] = 1;
    const badType = encodeHeader(4 as FrameType, 0, 0, 0);
    for (const bad of [badVersion, badType]) {
      const bytes = Buffer.concat([good, bad, good]);
      for (const chunks of [[bytes], [...oneByteAtATime(bytes)]]) {
        const events = parse(chunks);
        expect(events).toHaveLength(2);
        expect(events[0].kind).toBe('frame');
        expect(events[1]).toMatchObject({ kind: 'error', code: 'ERR_MUX_PROTOCOL' });
      }
    }
  });
});
