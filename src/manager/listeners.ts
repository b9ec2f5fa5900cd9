import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { cannotListen } from '../errors.js';
import { Endpoint, parseAddress } from '../id/endpoint.js';
import type { RoutingId } from '../id/routing-id.js';

/** The TCP listeners on which peers reach a process directly, without a proxy. */
export class DirectListeners {
  private readonly listening: { server: Server; endpoint: string }[] = [];

  get size(): number {
    return this.listening.length;
  }

  get endpoints(): string[] {
    return this.listening.map((l) => l.endpoint);
  }

  /** Listens on `address` ("host:port", "[::1]:port" or a port) and resolves to the endpoint to dial. */
  async listen(address: string, routingId: RoutingId, accept: (socket: Socket) => void): Promise<string> {
    const { host, port } = parseAddress(address, '127.0.0.1');
    const server = createServer({ noDelay: true }, accept);
    server.listen(port, host);
    try {
      await Promise.race([
        once(server, 'listening'),
        once(server, 'error').then(([err]: Error[]) => {
          throw err;
        }),
      ]);
    } catch (err) {
      throw cannotListen(host, port, err);
    }
    // After listening, the server reports only failed accepts (EMFILE, ENFILE): the listener lives on.
    server.on('error', () => undefined);
    const bound = server.address();
    const boundPort = bound !== null && typeof bound === 'object' ? bound.port : port;
    const endpoint = new Endpoint(host, boundPort, routingId).toString();
    this.listening.push({ server, endpoint });
    return endpoint;
  }

  closeAll(): void {
    // Closing a net.Server stops accepting at once; its callback would also wait for every
    // connection it accepted, which stay open for their VCs.
    for (const { server } of this.listening.splice(0, this.listening.length)) server.close();
  }
}
