import { once } from 'node:events';
import type { Server } from 'node:net';
import { cannotListen } from '../errors.js';

/**
 * Starts `server` listening on host:port and resolves to the port it got (port 0: any free one);
 * a failure to listen is one clear error. After that, the server's errors are failed accepts
 * (EMFILE), and the listener lives on.
 */
export async function listenOn(server: Server, host: string, port: number): Promise<number> {
  server.listen({ host, port });
  try {
    await once(server, 'listening');
  } catch (err) {
    throw cannotListen(host, port, err);
  }
  server.on('error', () => undefined);
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : port;
}
