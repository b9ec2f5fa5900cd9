import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Reason } from '../../src/errors.js';
import { RoutingId } from '../../src/id/index.js';
import {
  FrameType,
  MAX_REASON_MESSAGE,
  decodeCredit,
  decodeHello,
  decodeOpenVc,
  decodePing,
  decodeProof,
  decodeReason,
  decodeRegister,
  decodeStatusRequest,
  decodeStatusResponse,
  decodeRegistrationDocument,
  decodeWindow,
  encodeCredit,
  encodeFrame,
  encodeHeader,
  encodeHello,
  encodeOpenVc,
  encodePing,
  encodePreface,
  encodeProof,
  encodeReason,
  encodeRegister,
  encodeStatusRequest,
  encodeDocument,
  encodeWindow,
  frameTypeName,
  negotiateVersion,
} from '../../src/wire/index.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
  return undefined;
}

describe('byte layout (the vectors in docs/protocol.md)', () => {
  it('preface', () => {
    expect(encodePreface().toString('hex')).toBe('5249445000020002');
    expect(encodePreface(1, 3).toString('hex')).toBe('5249445000010003');
  });

  it('header', () => {
    expect(encodeHeader(FrameType.Data, 1, 5).toString('hex')).toBe('230000000000000100000005');
    expect(encodeHeader(FrameType.Ping, 0, 8).toString('hex')).toBe('300000000000000000000008');
    expect(encodeHeader(FrameType.Credit, 0xfffffffe, 4).toString('hex')).toBe('2400' + '0000' + 'fffffffe' + '00000004');
  });

  it('payloads', () => {
    expect(encodeReason(Reason.UnknownDestination, 'no').toString('hex')).toBe('00016e6f');
    expect(encodeWindow(65536).toString('hex')).toBe('00010000');
    const open = encodeOpenVc({
      dst: RoutingId.parse('11'.repeat(16)),
      src: RoutingId.parse('22'.repeat(16)),
      srcPublicKey: Buffer.alloc(32, 0x33),
      window: 0x01020304,
      tokenMac: Buffer.alloc(32, 0x74),
    });
    expect(open.toString('hex')).toBe('11'.repeat(16) + '22'.repeat(16) + '33'.repeat(32) + '01020304' + '74'.repeat(32));
    expect(encodeHello(Buffer.alloc(32, 1), Buffer.alloc(32, 2), Buffer.alloc(32, 3)).toString('hex')).toBe('01'.repeat(32) + '02'.repeat(32) + '03'.repeat(32));
  });
});

describe('message round trips', () => {
  it('Hello, copied out of the frame', () => {
    const publicKey = randomBytes(32);
    const ephemeralKey = randomBytes(32);
    const nonce = randomBytes(32);
    const payload = encodeHello(publicKey, ephemeralKey, nonce);
    const hello = decodeHello(payload);
    expect(hello.publicKey.equals(publicKey) && hello.ephemeralKey.equals(ephemeralKey) && hello.nonce.equals(nonce) && hello.bytes.equals(payload)).toBe(true);
    expect(hello.publicKey.buffer).not.toBe(payload.buffer);
  });

  it('Proof is the signature', () => {
    const sig = randomBytes(64);
    expect(decodeProof(encodeProof(sig)).equals(sig)).toBe(true);
  });

  it('Register and StatusRequest carry a 32-byte token MAC or nothing', () => {
    const mac = randomBytes(32);
    expect(decodeRegister(encodeRegister(mac)).equals(mac)).toBe(true);
    expect(decodeRegister(encodeRegister()).length).toBe(0);
    expect(decodeStatusRequest(encodeStatusRequest(mac)).equals(mac)).toBe(true);
    expect(code(() => decodeRegister(Buffer.from('secret')))).toBe('ERR_PROTOCOL');
    expect(code(() => encodeRegister(Buffer.alloc(6)))).toBe('RangeError');
  });

  it('StatusResponse', () => {
    const status = { servers: [{ rid: 'ab', vcs: 2 }], uptime: 1.5 };
    expect(decodeStatusResponse(encodeDocument(status))).toEqual(status);
    expect(code(() => decodeStatusResponse(Buffer.from('{')))).toBe('ERR_PROTOCOL');
  });

  it('RegisterOptions and RegisterOk documents: JSON objects, RegisterOk may be empty (docs/protocol.md 5.5 vector)', () => {
    const options = encodeDocument({ name: 'myapp' });
    expect(options.toString('hex')).toBe('7b226e616d65223a226d79617070227d');
    expect(decodeRegistrationDocument(FrameType.RegisterOptions, options)).toEqual({ name: 'myapp' });
    expect(decodeRegistrationDocument(FrameType.RegisterOk, Buffer.alloc(0))).toEqual({});
    for (const bad of ['[1]', '"x"', 'null', '{']) {
      expect(code(() => decodeRegistrationDocument(FrameType.RegisterOptions, Buffer.from(bad)))).toBe('ERR_PROTOCOL');
    }
  });

  it('reasons, with any message', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff }), fc.string({ maxLength: 300, unit: 'grapheme' }), (reason, message) => {
        expect(decodeReason(encodeReason(reason, message))).toEqual({ reason, message });
      }),
    );
    expect(decodeReason(encodeReason(Reason.Normal))).toEqual({ reason: 0, message: '' });
  });

  it('truncates long reason messages at a character boundary', () => {
    const long = `${'a'.repeat(MAX_REASON_MESSAGE - 1)}€tail`;
    const payload = encodeReason(Reason.Internal, long);
    expect(payload.length).toBe(2 + MAX_REASON_MESSAGE - 1);
    expect(decodeReason(payload).message).toBe('a'.repeat(MAX_REASON_MESSAGE - 1));
    expect(encodeReason(Reason.Internal, 'b'.repeat(5000)).length).toBe(2 + MAX_REASON_MESSAGE);
  });

  it('OpenVc, with and without token', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
        (dst, src, key, window, mac) => {
          const open = decodeOpenVc(
            encodeOpenVc({ dst: RoutingId.fromBytes(dst), src: RoutingId.fromBytes(src), srcPublicKey: Buffer.from(key), window, tokenMac: mac && Buffer.from(mac) }),
          );
          expect(open.dst.bytes.equals(dst) && open.src.bytes.equals(src) && open.srcPublicKey.equals(key)).toBe(true);
          expect(open.window).toBe(window);
          expect(open.tokenMac.equals(Buffer.from(mac ?? []))).toBe(true);
        },
      ),
    );
  });

  it('windows, credits and pings', () => {
    expect(decodeWindow(encodeWindow(0))).toBe(0);
    expect(decodeWindow(encodeWindow(0xffffffff), FrameType.VcAccepted)).toBe(0xffffffff);
    expect(decodeCredit(encodeCredit(1))).toBe(1);
    expect(decodeWindow(encodeCredit(7), FrameType.Credit)).toBe(7);
    const ping = randomBytes(8);
    expect(decodePing(encodePing(ping)).equals(ping)).toBe(true);
  });

  it('encodeFrame passes payloads through for writev', () => {
    const payload = Buffer.from('abc');
    const [header, part] = encodeFrame(FrameType.Data, 9, payload);
    expect(part).toBe(payload);
    expect(header.readUInt32BE(8)).toBe(3);
    const parts = [Buffer.from('ab'), Buffer.from('cde')];
    const out = encodeFrame(FrameType.Data, 9, parts);
    expect(out.slice(1)).toEqual(parts);
    expect(out[1]).toBe(parts[0]);
    expect(out[0].readUInt32BE(8)).toBe(5);
    expect(encodeFrame(FrameType.Unregister, 0).length).toBe(1);
  });
});

describe('malformed payloads', () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['short Hello', () => decodeHello(Buffer.alloc(63)), /^malformed Hello frame: payload must be 96 bytes, got 63$/],
    ['long Proof', () => decodeProof(Buffer.alloc(65)), /^malformed Proof frame: payload must be 64 bytes, got 65$/],
    ['truncated OpenVc', () => decodeOpenVc(Buffer.alloc(67)), /^malformed OpenVc frame: payload must be at least 68 bytes, got 67$/],
    ['empty reason', () => decodeReason(Buffer.alloc(1), FrameType.GoAway), /^malformed GoAway frame: payload must be at least 2 bytes, got 1$/],
    ['reason of unnamed frame', () => decodeReason(Buffer.alloc(0)), /^malformed reason payload: payload must be at least 2 bytes, got 0$/],
    ['short window', () => decodeWindow(Buffer.alloc(3)), /^malformed window payload: payload must be 4 bytes, got 3$/],
    ['zero credit', () => decodeCredit(Buffer.alloc(4)), /^malformed Credit frame: credit must be greater than 0$/],
    ['long ping', () => decodePing(Buffer.alloc(9), FrameType.Pong), /^malformed Pong frame: payload must be 8 bytes, got 9$/],
  ];
  for (const [name, fn, message] of cases) {
    it(`rejects a ${name} with ERR_PROTOCOL`, () => {
      expect(code(fn)).toBe('ERR_PROTOCOL');
      expect(fn).toThrow(message);
    });
  }
});

describe('encoder argument checks (bugs in the caller: RangeError)', () => {
  const cases: Array<[string, () => unknown]> = [
    ['connection frame with vci', () => encodeHeader(FrameType.Ping, 1, 8)],
    ['VC frame without vci', () => encodeHeader(FrameType.Data, 0, 1)],
    ['wrong fixed length', () => encodeHeader(FrameType.Credit, 1, 5)],
    ['unknown type', () => encodeHeader(0x99 as FrameType, 0, 0)],
    ['vci over u32', () => encodeHeader(FrameType.Data, 2 ** 32, 0)],
    ['negative length', () => encodeHeader(FrameType.Data, 1, -1)],
    ['fractional length', () => encodeHeader(FrameType.Data, 1, 1.5)],
    ['empty version range', () => encodePreface(2, 1)],
    ['version 0', () => encodePreface(0, 1)],
    ['short public key', () => encodeHello(Buffer.alloc(31), Buffer.alloc(32), Buffer.alloc(32))],
    ['short signature', () => encodeProof(Buffer.alloc(63))],
    ['zero credit', () => encodeCredit(0)],
    ['window over u32', () => encodeWindow(2 ** 32)],
    ['reason over u16', () => encodeReason(0x10000)],
    ['short ping', () => encodePing(Buffer.alloc(7))],
    ['short nonce in Hello', () => encodeHello(Buffer.alloc(32), Buffer.alloc(32), Buffer.alloc(31))],
  ];
  for (const [name, fn] of cases) {
    it(`rejects ${name}`, () => {
      expect(fn).toThrow(RangeError);
    });
  }
});

describe('helpers', () => {
  it('negotiateVersion picks the highest common version', () => {
    expect(negotiateVersion({ minVersion: 1, maxVersion: 3 }, { minVersion: 2, maxVersion: 5 })).toBe(3);
    expect(code(() => negotiateVersion({ minVersion: 1, maxVersion: 1 }, { minVersion: 2, maxVersion: 2 }))).toBe('ERR_UNSUPPORTED_VERSION');
  });

  it('frameTypeName', () => {
    expect(frameTypeName(FrameType.OpenVc)).toBe('OpenVc');
    expect(frameTypeName(0x7f)).toBe('0x7f');
  });
});
