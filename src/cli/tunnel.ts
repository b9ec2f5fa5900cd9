import { connect, type Socket } from 'node:net';
import { finished, type Duplex } from 'node:stream';
import { ServiceUnreachableError } from '../errors.js';
import type { Flow } from '../manager/flow.js';

/**
 * `serve` and `connect` agree on one message at the start of every flow, from the serving
 * side: an empty message when its local connection is up, or the reason it failed. Without
 * it a refused local service would look like a bare stream reset to the client.
 */
export async function openServiceConnection(flow: Flow, host: string, port: number): Promise<Socket> {
  const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ECONNREFUSED' ? 'connection refused' : (err as Error).message;
    const reason = `the server could not reach its local service at ${host}:${port}: ${why}`;
    await flow.writeMsgAndClose(Buffer.from(reason, 'utf8')).catch(() => undefined);
    throw new ServiceUnreachableError(reason, { cause: err });
  }
  await flow.writeMsg();
  return socket;
}

/** Reads the serving side's opening message; rejects with its reason if the service was unreachable. */
export async function awaitServiceReady(flow: Flow): Promise<void> {
  const reply = await flow.readMsg(64 * 1024);
  if (reply.length > 0) throw new ServiceUnreachableError(reply.toString('utf8'));
}

/**
 * Pipes a and b both ways with half-close: each side's end becomes the other's end. Resolves
 * once both directions have delivered everything (the writable sides finished), or after an
 * error or premature close on either side has torn both down.
 */
export function splice(a: Duplex, b: Duplex): Promise<void> {
  return new Promise<void>((resolve) => {
    let pending = 2;
    let failed = false;
    const fail = (err: Error): void => {
      if (failed) return;
      failed = true;
      a.destroy(err);
      b.destroy(err);
      resolve();
    };
    const direction = (from: Duplex, to: Duplex): void => {
      from.pipe(to);
      finished(from, { writable: false }, (err) => {
        if (err) fail(err);
      });
      finished(to, { readable: false }, (err) => {
        if (err) fail(err);
        else if (--pending === 0 && !failed) resolve();
      });
    };
    direction(a, b);
    direction(b, a);
  });
}
