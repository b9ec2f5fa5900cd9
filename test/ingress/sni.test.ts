import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ClientHelloReader, DEFAULT_MAX_HELLO_BYTES, TlsAlert, alertRecord, parseClientHello, type HelloResult } from '../../src/ingress/sni.js';

/** The first bytes a real node:tls client sends (its ClientHello records), read off a plain TCP server. */
async function capturedHello(servername: string | undefined): Promise<Buffer> {
  const server = createServer();
  const bytes = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        const all = Buffer.concat(chunks);
        // Every record header announces its length: stop once the first handshake message is whole.
        if (all.length >= 9 && all.length >= 9 + all.readUIntBE(6, 3)) {
          socket.destroy();
          resolve(all);
        }
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', servername: servername ?? '', rejectUnauthorized: false });
  client.on('error', () => undefined);
  const hello = await bytes;
  client.destroy();
  await new Promise((resolve) => server.close(resolve));
  return hello;
}

function readAllAt(bytes: Buffer, splits: number[]): HelloResult {
  const reader = new ClientHelloReader();
  let result: HelloResult = { kind: 'more' };
  let at = 0;
  for (const split of [...splits, bytes.length]) {
    result = reader.push(bytes.subarray(at, split));
    at = split;
  }
  return result;
}

/** The handshake message of a captured hello, cut into records of `size` bytes each. */
function refragment(hello: Buffer, size: number): Buffer {
  const message = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let i = 0; i < message.length; i += size) {
    const fragment = message.subarray(i, i + size);
    records.push(Buffer.from([22, 3, 1, fragment.length >> 8, fragment.length & 0xff]), fragment);
  }
  return Buffer.concat(records);
}

/** A ClientHello record with these extensions (type, data), for shapes no real client sends. */
function helloWith(extensions: Array<[number, Buffer]>): Buffer {
  const ext = Buffer.concat(extensions.map(([type, data]) => Buffer.concat([u16(type), u16(data.length), data])));
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]), u16(ext.length), ext]);
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(handshake.length), handshake]);
}

function serverName(...names: Array<[number, string]>): Buffer {
  const list = Buffer.concat(names.map(([type, name]) => Buffer.concat([Buffer.from([type]), u16(Buffer.byteLength(name, 'latin1')), Buffer.from(name, 'latin1')])));
  return Buffer.concat([u16(list.length), list]);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

describe('ClientHelloReader', () => {
  it("reads the server name of a real node:tls ClientHello, whole, byte by byte, and split anywhere", async () => {
    const hello = await capturedHello('MyApp.Tunnel.Example.com');
    expect(readAllAt(hello, [])).toEqual({ kind: 'hello', serverName: 'myapp.tunnel.example.com' });
    expect(readAllAt(hello, Array.from({ length: hello.length - 1 }, (_, i) => i + 1))).toEqual({ kind: 'hello', serverName: 'myapp.tunnel.example.com' });
    for (let split = 1; split < hello.length; split++) expect(readAllAt(hello, [split]).kind).toBe('hello');
  });

  it('reads a ClientHello spread over many records, as TLS allows', async () => {
    const hello = await capturedHello('a.example.com');
    for (const size of [1, 7, 100]) expect(readAllAt(refragment(hello, size), [])).toEqual({ kind: 'hello', serverName: 'a.example.com' });
  });

  it('says a ClientHello without server_name has none', async () => {
    expect(readAllAt(await capturedHello(undefined), [])).toEqual({ kind: 'hello', serverName: undefined });
  });

  it('refuses what is not TLS at its first byte, with no alert', () => {
    const reader = new ClientHelloReader();
    expect(reader.push(Buffer.from('G'))).toMatchObject({ kind: 'invalid', alert: undefined });
    // Once decided, it stays decided.
    expect(reader.push(Buffer.from('ET / HTTP/1.1\r\n'))).toMatchObject({ kind: 'invalid' });
    expect(new ClientHelloReader().push(Buffer.from([0x80, 0x2e, 0x01]))).toMatchObject({ kind: 'invalid', alert: undefined });
  });

  it('refuses an announced ClientHello over the bound before buffering it', () => {
    const reader = new ClientHelloReader(4096);
    const header = Buffer.from([22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00, 0x00]); // a 64 KiB ClientHello announced
    expect(reader.push(header)).toMatchObject({ kind: 'invalid', alert: TlsAlert.HandshakeFailure });
  });

  it('bounds what a stream of tiny records may make it take', () => {
    const reader = new ClientHelloReader(1024);
    let result: HelloResult = reader.push(Buffer.from([22, 3, 1, 0, 4, 1, 0, 0x03, 0x00]));
    let fed = 9;
    while (result.kind === 'more') {
      result = reader.push(Buffer.from([22, 3, 1, 0, 1, 0]));
      fed += 6;
    }
    expect(result).toMatchObject({ kind: 'invalid', alert: TlsAlert.HandshakeFailure });
    expect(fed).toBeLessThanOrEqual(1024 + 6);
  });

  it('refuses records that break the record layer', () => {
    expect(new ClientHelloReader().push(Buffer.from([22, 3, 1, 0, 0]))).toMatchObject({ kind: 'invalid', alert: TlsAlert.DecodeError });
    expect(new ClientHelloReader().push(Buffer.from([22, 3, 1, 0x40, 0x01]))).toMatchObject({ kind: 'invalid', alert: TlsAlert.RecordOverflow });
    expect(new ClientHelloReader().push(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0]))).toMatchObject({ kind: 'invalid', alert: TlsAlert.UnexpectedMessage });
    // An alert record where the rest of the ClientHello should be.
    expect(new ClientHelloReader().push(Buffer.from([22, 3, 1, 0, 4, 1, 0, 0, 9, 21, 3, 3, 0, 2]))).toMatchObject({ kind: 'invalid', alert: TlsAlert.UnexpectedMessage });
  });

  it('refuses server_name shapes RFC 6066 forbids, and takes other name types as no host name', () => {
    expect(readAllAt(helloWith([[0, serverName([0, 'ok.example'])]]), [])).toEqual({ kind: 'hello', serverName: 'ok.example' });
    expect(readAllAt(helloWith([[0, serverName([0, 'a.example'], [0, 'b.example'])]]), [])).toMatchObject({ kind: 'invalid', alert: TlsAlert.DecodeError });
    expect(readAllAt(helloWith([[0, serverName([0, 'a.example'])], [0, serverName([0, 'a.example'])]]), [])).toMatchObject({ kind: 'invalid' });
    expect(readAllAt(helloWith([[0, serverName([0, 'bad name.example'])]]), [])).toMatchObject({ kind: 'invalid' });
    expect(readAllAt(helloWith([[0, serverName([0, 'caf\u00e9.example'])]]), [])).toMatchObject({ kind: 'invalid' });
    expect(readAllAt(helloWith([[0, serverName([0, 'trailing.dot.'])]]), [])).toMatchObject({ kind: 'invalid' });
    expect(readAllAt(helloWith([[0, Buffer.alloc(0)]]), [])).toMatchObject({ kind: 'invalid' });
    expect(readAllAt(helloWith([[0, serverName([5, 'other'])]]), [])).toEqual({ kind: 'hello', serverName: undefined });
    expect(readAllAt(helloWith([[10, Buffer.from([0, 2, 0, 29])]]), [])).toEqual({ kind: 'hello', serverName: undefined });
  });

  it('never throws and never takes more than its bound, whatever the bytes (fuzzed)', async () => {
    const hello = await capturedHello('fuzz.example.com');
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 80 }), (chunks) => {
        const reader = new ClientHelloReader(2048);
        let taken = 0;
        for (const chunk of chunks) {
          const result = reader.push(chunk);
          if (result.kind !== 'more') return;
          taken += chunk.length;
        }
        expect(taken).toBeLessThanOrEqual(2048 + 300);
      }),
      { numRuns: 500 },
    );
    // A real hello with one byte changed: some answer, never an exception.
    fc.assert(
      fc.property(fc.nat(hello.length - 1), fc.uint8Array({ minLength: 1, maxLength: 1 }), (at, [value]) => {
        const copy = Buffer.from(hello);
        copy[at] = value!;
        expect(['more', 'hello', 'invalid']).toContain(new ClientHelloReader().push(copy).kind);
      }),
      { numRuns: 2000 },
    );
  });

  it('parses a ClientHello body with no extensions (pre-TLS 1.2 clients) as no name', () => {
    const body = Buffer.concat([Buffer.from([3, 1]), Buffer.alloc(32), Buffer.from([0]), u16(2), Buffer.from([0, 0x2f]), Buffer.from([1, 0])]);
    expect(parseClientHello(body)).toEqual({ serverName: undefined });
    expect(typeof parseClientHello(body.subarray(0, 30))).toBe('string');
  });

  it('writes a fatal alert record', () => {
    expect(alertRecord(TlsAlert.UnrecognizedName).toString('hex')).toBe('15030300020270');
    expect(DEFAULT_MAX_HELLO_BYTES).toBe(16384);
  });
});
