import { makeGenericClientConstructor, Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';

/** JSON on the wire keeps the tests free of .proto files and code generation. */
const serialize = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const deserialize = (bytes: Buffer): unknown => JSON.parse(bytes.toString('utf8'));

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  };
}

export const echoService: ServiceDefinition = {
  echo: method('Echo', false, false),
  count: method('Count', false, true),
  sum: method('Sum', true, false),
  chat: method('Chat', true, true),
  hang: method('Hang', false, false),
};

export const EchoClient = makeGenericClientConstructor(echoService, 'Echo');

/** A server for echoService; `cancelled` settles when a Hang call is cancelled or its deadline passes. */
export function echoServer(): { server: Server; cancelled: Promise<void> } {
  let onCancelled!: () => void;
  const cancelled = new Promise<void>((resolve) => {
    onCancelled = resolve;
  });
  const implementation: UntypedServiceImplementation = {
    echo: (call: any, callback: any) => callback(null, { text: call.request.text, peer: 'server' }),
    count: (call: any) => {
      for (let i = 0; i < call.request.n; i++) call.write({ i });
      call.end();
    },
    sum: (call: any, callback: any) => {
      let total = 0;
      call.on('data', (m: { n: number }) => (total += m.n));
      call.on('end', () => callback(null, { total }));
    },
    chat: (call: any) => {
      call.on('data', (m: { text: string }) => call.write({ text: m.text.toUpperCase() }));
      call.on('end', () => call.end());
    },
    hang: (call: any) => call.on('cancelled', onCancelled),
  };
  const server = new Server();
  server.addService(echoService, implementation);
  return { server, cancelled };
}
