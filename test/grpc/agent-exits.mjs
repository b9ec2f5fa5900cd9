// Run by reverse.test.ts: an agent closed during a backoff wait must let its process exit by
// itself. It uses the build (dist/), as the CLI tests do, since a child process cannot load .ts.
import { once } from 'node:events';
import { Server } from '@grpc/grpc-js';
import { Manager, Proxy } from '../../dist/src/index.js';
import { serveGrpcReverse } from '../../dist/src/grpc/index.js';

const proxy = await Proxy.listen({ host: '127.0.0.1', port: 0 });
const hub = new Manager();
const { endpoint } = await hub.proxyListen('hub', proxy.endpoint);
const agent = new Manager();
const server = new Server();
// A minute between dials: a retry timer that close() left behind would hold the process that long.
const reverse = await serveGrpcReverse(agent, endpoint, server, { initialDelay: 60_000, maxDelay: 60_000 });
const retrying = once(reverse, 'retrying');
await proxy.close();
await retrying;
await reverse.close();
await Promise.all([agent.close(), hub.close()]);
server.forceShutdown();
process.stdout.write('closed\n');
