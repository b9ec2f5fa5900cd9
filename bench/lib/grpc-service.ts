/**
 * The service bench/grpc.ts measures: raw bytes both ways (no serialization cost), a unary echo
 * and a server stream of a requested size. test/grpc uses it too, to call a grpc-js server from
 * node:http2 through createConnection.
 */
import { makeGenericClientConstructor, Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';

const raw = (bytes: Buffer): Buffer => bytes;

function method(name: string, responseStream: boolean) {
  return {
    path: `/bench.Bench/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  };
}

export const benchService: ServiceDefinition = {
  unary: method('Unary', false),
  stream: method('Stream', true),
};

export const BenchClient = makeGenericClientConstructor(benchService, 'Bench');

/** A Stream request: `total` bytes in messages of `size` bytes (the last may be shorter). */
export function streamRequest(total: number, size: number): Buffer {
  const request = Buffer.alloc(12);
  request.writeBigUInt64BE(BigInt(total), 0);
  request.writeUInt32BE(size, 8);
  return request;
}

/** A server for benchService: Unary echoes its request; Stream sends what its request asks for, at the pace the client reads. */
export function benchServer(): Server {
  const implementation: UntypedServiceImplementation = {
    unary: (call: any, callback: any) => callback(null, call.request),
    stream: (call: any) => {
      const request = call.request as Buffer;
      let left = Number(request.readBigUInt64BE(0));
      const size = request.readUInt32BE(8);
      const block = Buffer.alloc(size, 0x5a);
      let cancelled = false;
      call.on('cancelled', () => (cancelled = true));
      const pump = (): void => {
        while (left > 0 && !cancelled) {
          const message = left >= size ? block : block.subarray(0, left);
          left -= message.length;
          if (!call.write(message)) {
            call.once('drain', pump);
            return;
          }
        }
        if (!cancelled) call.end();
      };
      pump();
    },
  };
  const server = new Server({ 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  server.addService(benchService, implementation);
  return server;
}
