import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/**
 * A JS Duplex over a socket, the shape the channel gets from a VC in production; it makes
 * node:tls go through its JS stream adapter instead of the socket's native handle.
 */
export function jsDuplex(socket: Socket): Duplex {
  // Half-close is the VC's to carry; here the socket underneath must not end itself on FIN.
  socket.allowHalfOpen = true;
  const duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      if (socket.write(chunk)) callback();
      else socket.once('drain', () => callback());
    },
    final(callback) {
      socket.end(callback);
    },
    read() {
      socket.resume();
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (err) => duplex.destroy(err));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
