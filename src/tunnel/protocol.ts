import { connect, type Socket } from 'node:net';
import { ProtocolError, ServiceUnreachableError } from '../errors.js';
import type { Flow } from '../manager/flow.js';

/** Largest origin message: a few short fields. */
const MAX_ORIGIN = 4096;

/**
 * Where a flow the proxy's ingress opened comes from (docs/protocol.md 10.3): the ingress that
 * took it (`http`, `tls`, `tcp`), the public client's address, and the host name it asked for.
 */
export interface FlowOrigin {
  via: string;
  client: string;
  host?: string;
}

/** The ingress's first message on each flow it opens, before the serving side's opening message. */
export function writeOrigin(flow: Flow, origin: FlowOrigin): Promise<void> {
  return flow.writeMsg(Buffer.from(JSON.stringify(origin), 'utf8'));
}

/** Reads the origin message a flow from the proxy's ingress starts with. */
export async function readOrigin(flow: Flow): Promise<FlowOrigin> {
  const text = (await flow.readMsg(MAX_ORIGIN)).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError('ERR_PROTOCOL', 'the ingress origin message is not JSON');
  }
  const origin = value as Partial<FlowOrigin> | null;
  if (typeof origin !== 'object' || origin === null || typeof origin.via !== 'string' || typeof origin.client !== 'string') {
    throw new ProtocolError('ERR_PROTOCOL', 'the ingress origin message lacks "via" or "client"');
  }
  return { via: origin.via, client: origin.client, ...(typeof origin.host === 'string' && { host: origin.host }) };
}

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
