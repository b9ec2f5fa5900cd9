import { describe, expect, it } from 'vitest';
import { ProtocolError } from '../../src/errors.js';
import {
  DEFAULT_MAX_PAYLOAD,
  FrameDecoder,
  FrameType,
  encodeCredit,
  encodeFrame,
  encodeHeader,
  encodePreface,
  payloadOf,
  type Frame,
  type PrefaceInfo,
} from '../../src/wire/index.js';

/** A raw header, for byte patterns encodeHeader refuses to produce. */
function rawHeader(type: number, vci: number, length: number, flags = 0, reserved = 0): Buffer {
  const b = Buffer.alloc(12);
  b[0] = type;
  b[1] = flags;
  b.writeUInt16BE(reserved, 2);
  b.writeUInt32BE(vci, 4);
  b.writeUInt32BE(length, 8);
  return b;
}

function rawPreface(min: number, max: number, magic = 'RIDP'): Buffer {
  const b = Buffer.alloc(8);
  b.write(magic, 0, 'latin1');
  b.writeUInt16BE(min, 4);
  b.writeUInt16BE(max, 6);
  return b;
}

function make(options: { expectPreface?: boolean; maxPayload?: number } = {}) {
  const frames: Frame[] = [];
  const prefaces: PrefaceInfo[] = [];
  const decoder = new FrameDecoder({ ...options, onPreface: (p) => prefaces.push(p), onFrame: (f) => frames.push(f) });
  return { decoder, frames, prefaces };
}

/** The error push() throws for `bytes` (pushed as one chunk), checked to be a ProtocolError. */
function failure(bytes: Buffer, options: { expectPreface?: boolean; maxPayload?: number } = { expectPreface: false }): ProtocolError {
  const { decoder } = make(options);
  try {
    decoder.push(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error('expected push to throw');
}

describe('FrameDecoder', () => {
  it('decodes the preface, then frames, delivering a payload inside one chunk as a view of it', () => {
    const { decoder, frames, prefaces } = make();
    const data = Buffer.alloc(300 * 1024, 0xab);
    const chunk = Buffer.concat([encodePreface(), ...encodeFrame(FrameType.Data, 7, data), ...encodeFrame(FrameType.RegisterOk, 0)]);
    decoder.push(chunk);
    expect(prefaces).toEqual([{ minVersion: 2, maxVersion: 2, version: 2 }]);
    expect(frames.map((f) => [f.type, f.vci, f.length])).toEqual([
      [FrameType.Data, 7, data.length],
      [FrameType.RegisterOk, 0, 0],
    ]);
    expect(frames[0].parts.length).toBe(1);
    expect(frames[0].parts[0].buffer).toBe(chunk.buffer);
    expect(frames[0].parts[0].byteOffset).toBe(chunk.byteOffset + 20);
    expect(frames[1].parts).toEqual([]);
    expect(payloadOf(frames[1]).length).toBe(0);
  });

  it('decodes a stream pushed one byte at a time, keeping one part per byte of payload', () => {
    const { decoder, frames } = make();
    const stream = Buffer.concat([encodePreface(), ...encodeFrame(FrameType.Data, 1, Buffer.from('hello')), ...encodeFrame(FrameType.Credit, 1, encodeCredit(9))]);
    for (let i = 0; i < stream.length; i++) {
      decoder.push(stream.subarray(i, i + 1));
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(12);
    }
    expect(frames.length).toBe(2);
    expect(frames[0].parts.length).toBe(5);
    expect(payloadOf(frames[0]).toString()).toBe('hello');
    expect(payloadOf(frames[1]).readUInt32BE(0)).toBe(9);
  });

  it('counts buffered header and payload bytes', () => {
    const { decoder } = make({ expectPreface: false });
    const [header, payload] = encodeFrame(FrameType.Data, 1, Buffer.alloc(100));
    decoder.push(header.subarray(0, 5));
    expect(decoder.bufferedBytes).toBe(5);
    decoder.push(Buffer.concat([header.subarray(5), payload.subarray(0, 40)]));
    expect(decoder.bufferedBytes).toBe(40);
    decoder.push(payload.subarray(40));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('ignores empty chunks', () => {
    const { decoder, frames } = make({ expectPreface: false });
    decoder.push(Buffer.alloc(0));
    decoder.push(Buffer.concat(encodeFrame(FrameType.Ping, 0, Buffer.alloc(8))));
    expect(frames.length).toBe(1);
  });

  describe('oversized frames', () => {
    it('rejects a 2^32-1 length on the push carrying the header, holding nothing', () => {
      const { decoder } = make({ expectPreface: false });
      const header = rawHeader(FrameType.Data, 1, 0xffffffff);
      decoder.push(header.subarray(0, 11));
      expect(decoder.bufferedBytes).toBe(11);
      let err: unknown;
      try {
        decoder.push(header.subarray(11));
      } catch (e) {
        err = e;
      }
      expect((err as ProtocolError).code).toBe('ERR_FRAME_TOO_LARGE');
      expect((err as Error).message).toBe(`Data frame announces a 4294967295-byte payload; the limit is ${DEFAULT_MAX_PAYLOAD} bytes`);
      expect(decoder.bufferedBytes).toBe(0);
    });

    it('applies the configured limit exactly', () => {
      expect(failure(rawHeader(FrameType.Data, 1, 101), { expectPreface: false, maxPayload: 100 }).code).toBe('ERR_FRAME_TOO_LARGE');
      const { decoder, frames } = make({ expectPreface: false, maxPayload: 100 });
      decoder.push(Buffer.concat(encodeFrame(FrameType.Data, 1, Buffer.alloc(100))));
      expect(frames.length).toBe(1);
      expect(failure(rawHeader(FrameType.StatusResponse, 0, DEFAULT_MAX_PAYLOAD + 1)).code).toBe('ERR_FRAME_TOO_LARGE');
    });

    it('rejects a bad maxPayload option', () => {
      expect(() => make({ maxPayload: -1 })).toThrow(/maxPayload must be an integer/);
      expect(() => make({ maxPayload: 2 ** 32 })).toThrow(/maxPayload must be an integer/);
    });
  });

  describe('preface', () => {
    it('rejects an HTTP client with a message naming what it sent', () => {
      const err = failure(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), {});
      expect(err.code).toBe('ERR_BAD_PREFACE');
      expect(err.message).toBe('not a ridproxy peer (expected preface "RIDP", got "GET "; looks like an HTTP client)');
    });

    it('rejects TLS and random bytes, escaping what is not printable', () => {
      expect(failure(Buffer.from([0x16, 0x03, 0x01, 0x02, 0, 0, 0, 0]), {}).message).toBe(
        'not a ridproxy peer (expected preface "RIDP", got "\\x16\\x03\\x01\\x02"; looks like a TLS client)',
      );
      expect(failure(Buffer.from([0x52, 0x49, 0x22, 0xff]), {}).message).toBe('not a ridproxy peer (expected preface "RIDP", got "RI\\"\\xff")');
    });

    it('fails on the first wrong byte without waiting for the rest', () => {
      const { decoder } = make();
      decoder.push(Buffer.from('RI'));
      expect(() => decoder.push(Buffer.from('X'))).toThrow(/got "RIX"/);
    });

    it('negotiates the highest common version', () => {
      const { decoder, prefaces } = make();
      decoder.push(rawPreface(1, 5));
      expect(prefaces).toEqual([{ minVersion: 1, maxVersion: 5, version: 2 }]);
    });

    it('rejects a range without version 2, such as version 1 alone', () => {
      const err = failure(rawPreface(1, 1), {});
      expect(err.code).toBe('ERR_UNSUPPORTED_VERSION');
      expect(err.message).toBe('unsupported protocol version: the peer speaks version 1, this side speaks version 2');
      expect(failure(rawPreface(3, 4), {}).message).toBe('unsupported protocol version: the peer speaks versions 3-4, this side speaks version 2');
    });

    it('rejects an empty or zero-based range as a bad preface', () => {
      expect(failure(rawPreface(3, 2), {}).code).toBe('ERR_BAD_PREFACE');
      expect(failure(rawPreface(0, 1), {}).message).toMatch(/version range 0-1 is empty or starts at 0/);
    });

    it('is not expected with expectPreface false', () => {
      expect(failure(Buffer.concat([encodePreface(), Buffer.alloc(4)])).message).toMatch(/unknown frame type 0x52/);
    });
  });

  describe('headers', () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['unknown type', rawHeader(0x7f, 0, 0), /^unknown frame type 0x7f$/],
      ['type 0', rawHeader(0x00, 0, 0), /^unknown frame type 0x00$/],
      ['nonzero flags', rawHeader(FrameType.Data, 1, 0, 0x01), /^Data frame has flags 0x01; this version defines none$/],
      ['nonzero reserved', rawHeader(FrameType.Ping, 0, 8, 0, 0x0100), /^Ping frame has reserved field 0x0100; it must be 0$/],
      ['connection frame with a vci', rawHeader(FrameType.GoAway, 3, 2), /^GoAway is a connection-level frame but has vci 3$/],
      ['VC frame without a vci', rawHeader(FrameType.Data, 0, 1), /^Data frame has vci 0; it needs a VC id$/],
      ['short Ping', rawHeader(FrameType.Ping, 0, 7), /^Ping payload must be 8 bytes, got 7$/],
      ['long Hello', rawHeader(FrameType.Hello, 0, 65), /^Hello payload must be 96 bytes, got 65$/],
      ['empty Credit', rawHeader(FrameType.Credit, 1, 0), /^Credit payload must be 4 bytes, got 0$/],
      ['RegisterOptions of 1 byte', rawHeader(FrameType.RegisterOptions, 0, 1), /^RegisterOptions payload must be 2-1024 bytes, got 1$/],
      ['RegisterOptions over 1 KiB', rawHeader(FrameType.RegisterOptions, 0, 1025), /^RegisterOptions payload must be 2-1024 bytes, got 1025$/],
      ['truncated OpenVc', rawHeader(FrameType.OpenVc, 1, 67), /^OpenVc payload must be 68-100 bytes, got 67$/],
      ['truncated CloseVc', rawHeader(FrameType.CloseVc, 1, 1), /^CloseVc payload must be at least 2 bytes, got 1$/],
    ];
    for (const [name, header, message] of cases) {
      it(`rejects a ${name} as soon as the header is in`, () => {
        const err = failure(header);
        expect(err.code).toBe('ERR_PROTOCOL');
        expect(err.message).toMatch(message);
      });
    }

    it('checks the vci rule for every type', () => {
      const vcTypes = new Set([FrameType.OpenVc, FrameType.VcAccepted, FrameType.VcRejected, FrameType.Data, FrameType.Credit, FrameType.CloseVc, FrameType.CreditRevoke, FrameType.CreditReturn]);
      for (const type of Object.values(FrameType).filter((v): v is FrameType => typeof v === 'number')) {
        const wrongVci = vcTypes.has(type) ? 0 : 1;
        expect(failure(rawHeader(type, wrongVci, 68)).message).toMatch(/vci/);
      }
    });

    it('rejects a zero Credit grant', () => {
      const err = failure(Buffer.concat([rawHeader(FrameType.Credit, 4, 4), Buffer.alloc(4)]));
      expect(err.code).toBe('ERR_PROTOCOL');
      expect(err.message).toBe('Credit frame on vci 4 grants 0 bytes; a grant must be greater than 0');
    });
  });

  it('stays dead after an error, rethrowing it', () => {
    const { decoder, frames } = make({ expectPreface: false });
    let first: unknown;
    try {
      decoder.push(rawHeader(0x7f, 0, 0));
    } catch (err) {
      first = err;
    }
    expect(first).toBeInstanceOf(ProtocolError);
    expect(() => decoder.push(Buffer.concat(encodeFrame(FrameType.Ping, 0, Buffer.alloc(8))))).toThrow(first as Error);
    try {
      decoder.push(Buffer.alloc(1));
    } catch (err) {
      expect(err).toBe(first);
    }
    expect(frames).toEqual([]);
  });

  it('dies with the exception a callback throws, keeping the frames before it', () => {
    const seen: number[] = [];
    const boom = new Error('boom');
    const decoder = new FrameDecoder({
      expectPreface: false,
      onPreface: () => undefined,
      onFrame: (f) => {
        seen.push(f.vci);
        if (f.vci === 2) throw boom;
      },
    });
    const stream = Buffer.concat([1, 2, 3].flatMap((vci) => encodeFrame(FrameType.Data, vci, Buffer.from('x'))));
    expect(() => decoder.push(stream)).toThrow(boom);
    expect(seen).toEqual([1, 2]);
    expect(() => decoder.push(Buffer.alloc(0))).toThrow(boom);
  });

  it('encodeHeader output is accepted with flags 0 and rejected with flags set', () => {
    expect(failure(encodeHeader(FrameType.Unregister, 0, 0, 0x80)).message).toMatch(/flags 0x80/);
  });
});
