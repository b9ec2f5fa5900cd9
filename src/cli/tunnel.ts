import { connect, type Socket } from 'node:net';
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
