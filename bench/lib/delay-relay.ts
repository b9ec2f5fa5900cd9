import { connect, createServer, type Server, type Socket } from 'node:net';
import { listenOnLoopback } from './listen.js';

/**
 * A TCP relay on loopback that holds every chunk for `oneWayMs` in each direction, so that a
 * connection through it has a round trip of twice that: a long path without netem. It adds
 * delay, and with `bytesPerSecond` a bottleneck whose queue is deep (a bufferbloated link): it
 * buffers what is in flight (up to `maxInFlight` bytes per direction, far beyond any window here,
 * before it stops reading) and ends, or resets, each side as the other does.
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

export async function startDelayRelay(
  targetPort: number,
  oneWayMs: number,
  { maxInFlight = DEFAULT_MAX_IN_FLIGHT, bytesPerSecond = Number.POSITIVE_INFINITY }: { maxInFlight?: number; bytesPerSecond?: number } = {},
): Promise<DelayRelay> {
  const sockets = new Set<Socket>();
  const delayed = (from: Socket, to: Socket): void => {
    const held: Held[] = [];
    /** When the bottleneck has sent what is held: a chunk leaves no earlier than the one before it plus its own time on the link. */
    let linkFreeAt = 0;
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
      linkFreeAt = Math.max(performance.now(), linkFreeAt) + (chunk.length * 1000) / bytesPerSecond;
      held.push({ chunk, due: linkFreeAt + oneWayMs });
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
