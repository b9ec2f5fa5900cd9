import { connect, createServer, type Server, type Socket } from 'node:net';
import { listenOnLoopback } from './listen.js';

/**
 * A TCP relay on loopback that holds every chunk for `oneWayMs` in each direction, so that a
 * connection through it has a round trip of twice that: a long path without netem. It adds
 * delay, not a bandwidth limit: it buffers what is in flight (up to `maxInFlight` bytes per
 * direction, far beyond any window here, before it stops reading) and ends, or resets, each
 * side as the other does.
 */
export interface DelayRelay {
  port: number;
  close(): Promise<void>;
}

interface Held {
  chunk: Buffer;
  due: number;
}

const DEFAULT_MAX_IN_FLIGHT = 256 << 20;

export async function startDelayRelay(targetPort: number, oneWayMs: number, maxInFlight = DEFAULT_MAX_IN_FLIGHT): Promise<DelayRelay> {
  const sockets = new Set<Socket>();
  const delayed = (from: Socket, to: Socket): void => {
    const held: Held[] = [];
    let heldBytes = 0;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const release = (): void => {
      timer = undefined;
      const now = performance.now();
      while (held.length > 0 && held[0].due <= now) {
        const { chunk } = held.shift()!;
        heldBytes -= chunk.length;
        to.write(chunk);
      }
      if (heldBytes < maxInFlight) from.resume();
      if (held.length > 0) timer = setTimeout(release, Math.max(0, held[0].due - performance.now()));
      else if (ended) to.end();
    };
    from.on('data', (chunk: Buffer) => {
      held.push({ chunk, due: performance.now() + oneWayMs });
      heldBytes += chunk.length;
      if (heldBytes >= maxInFlight) from.pause();
      timer ??= setTimeout(release, oneWayMs);
    });
    from.on('end', () => {
      ended = true;
      if (held.length === 0) to.end();
    });
    // Not on `from`'s close: a socket that has ended both ways closes while what it sent last is
    // still held here, and that must still be delivered. Only a closed `to` cannot take it.
    to.on('close', () => {
      clearTimeout(timer);
      held.length = 0;
      heldBytes = 0;
    });
  };
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (inbound) => {
    const outbound = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true, noDelay: true });
    for (const socket of [inbound, outbound]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    delayed(inbound, outbound);
    delayed(outbound, inbound);
  });
  const port = await listenOnLoopback(server);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
