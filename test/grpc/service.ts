import { makeGenericClientConstructor, Server, type ServiceDefinition, type ServiceError, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { grpcCaller } from '../../src/grpc/index.js';

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
  who: method('Who', false, false),
  whoStream: method('WhoStream', true, true),
  drip: method('Drip', false, true),
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
    // A message every 5 ms until the call ends.
    drip: (call: any) => {
      let i = 0;
      const timer = setInterval(() => call.write({ i: i++ }), 5);
      call.on('cancelled', () => clearInterval(timer));
    },
    // Who grpcCaller() says is calling, read when the handler starts and again after a timer.
    who: (call: any, callback: any) => {
      const first = callerName();
      const security = call.getAuthContext().transportSecurityType ?? null;
      setTimeout(() => callback(null, { first, later: callerName(), claimed: call.metadata.get('x-ridproxy-caller')[0] ?? null, security }), 5);
    },
    // The same for each message of a stream, from the call's own 'data' events.
    whoStream: (call: any) => {
      call.on('data', (m: { i: number }) => setTimeout(() => call.write({ i: m.i, caller: callerName() }), m.i % 3));
      call.on('end', () => setTimeout(() => call.end(), 10));
    },
  };
  const server = new Server();
  server.addService(echoService, implementation);
  return { server, cancelled };
}

function callerName(): string | null {
  const caller = grpcCaller();
  return caller === undefined ? null : `${caller.routingId}:${caller.publicKey.toString('hex')}`;
}

export function unary(client: any, name: string, request: unknown, options: object = {}): Promise<any> {
  return new Promise((resolve, reject) => client[name](request, options, (err: ServiceError | null, reply: unknown) => (err ? reject(err) : resolve(reply))));
}

export function collect(call: NodeJS.EventEmitter): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const got: unknown[] = [];
    call.on('data', (m) => got.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(got));
  });
}
