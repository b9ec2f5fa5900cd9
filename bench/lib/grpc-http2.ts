/**
 * gRPC calls from node:http2 itself, with no gRPC library: the framing (a flag byte and a 4-byte
 * length before each message) and the headers a gRPC server requires. Enough for unary and
 * server-streaming calls to a grpc-js server, which is what shows that `createConnection` works
 * for it (test/grpc) and what bench/grpc.ts times.
 */
import type { ClientHttp2Session, IncomingHttpHeaders } from 'node:http2';

export class GrpcStatusError extends Error {
  constructor(
    readonly code: number,
    details: string,
  ) {
    super(`gRPC status ${code}: ${details}`);
  }
}

function frame(message: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt32BE(message.length, 1);
  return Buffer.concat([header, message]);
}

/**
 * Calls `path` with one request message; each response message goes to `onMessage`. Resolves once
 * the trailers carry grpc-status 0, rejects with GrpcStatusError otherwise.
 */
export function http2Call(session: ClientHttp2Session, path: string, request: Buffer, onMessage: (message: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let pending: Buffer = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const length = pending.readUInt32BE(1);
        if (pending.length < 5 + length) break;
        onMessage(pending.subarray(5, 5 + length));
        pending = pending.subarray(5 + length);
      }
    });
    let status: IncomingHttpHeaders | undefined;
    // A call that fails at once gets its status in the headers ("trailers-only").
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) status = headers;
    });
    stream.on('trailers', (trailers) => (status = trailers));
    stream.on('error', reject);
    stream.on('close', () => {
      const code = Number(status?.['grpc-status'] ?? Number.NaN);
      if (code === 0) resolve();
      else reject(new GrpcStatusError(code, String(status?.['grpc-message'] ?? `no status (HTTP/2 stream closed with code ${stream.rstCode})`)));
    });
    stream.end(frame(request));
  });
}

/** A unary call: resolves to the one response message. */
export async function http2Unary(session: ClientHttp2Session, path: string, request: Buffer): Promise<Buffer> {
  const replies: Buffer[] = [];
  await http2Call(session, path, request, (message) => replies.push(Buffer.from(message)));
  if (replies.length !== 1) throw new Error(`a unary call got ${replies.length} messages`);
  return replies[0]!;
}
