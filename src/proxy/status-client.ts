import { connect } from 'node:net';
import { AuthenticationError, ProtocolError, RegistrationError, TimeoutError, UnreachableError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import { HopConnection } from '../hop/connection.js';
import { FrameType, payloadOf } from '../wire/index.js';
import type { ProxyStatusReport } from './proxy.js';

export interface StatusQueryOptions {
  /** The proxy's token, when it has one: without it the proxy withholds its status. */
  token?: string;
  identity?: Identity;
  /** Milliseconds for the whole query. Default 10 s. */
  timeout?: number;
}

/** Asks the proxy at `endpoint` for its registered servers and traffic counters. */
export async function queryProxyStatus(endpoint: string | Endpoint, options: StatusQueryOptions = {}): Promise<ProxyStatusReport> {
  const target = typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint;
  const timeout = options.timeout ?? 10_000;
  const socket = connect({ host: target.host, port: target.port });
  const timer = setTimeout(() => socket.destroy(new TimeoutError(`proxy ${target.address} did not answer within ${timeout} ms`)), timeout);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err: NodeJS.ErrnoException) =>
        reject(err instanceof TimeoutError ? err : new UnreachableError(`cannot reach proxy ${target.address}: ${err.code === 'ECONNREFUSED' ? 'connection refused' : err.message}`, { cause: err })),
      );
    });
    const hop = await HopConnection.establish({
      socket,
      identity: options.identity ?? Identity.generate(),
      initiator: true,
      keepAliveInterval: 0,
      handshakeTimeout: timeout,
      peerLabel: `proxy ${target.address}`,
    });
    if (!target.routingId.isNull() && !target.routingId.equals(hop.peerRoutingId)) {
      hop.destroy();
      throw new AuthenticationError(`the process at ${target.address} has routing id ${hop.peerRoutingId}, not the proxy's ${target.routingId}`);
    }
    const body = await new Promise<string>((resolve, reject) => {
      hop.start((frame) => {
        if (frame.type !== FrameType.StatusResponse) throw new ProtocolError('ERR_PROTOCOL', `proxy answered a status request with frame type ${frame.type}`);
        resolve(payloadOf(frame).toString('utf8'));
      });
      void hop.closed.then((err) => reject(err ?? new ProtocolError('ERR_PROTOCOL', 'proxy closed the connection without answering')));
      hop.send(FrameType.StatusRequest, 0, Buffer.from(options.token ?? '', 'utf8'));
    });
    hop.close();
    const parsed = JSON.parse(body) as { status?: ProxyStatusReport; error?: { reason: number; message: string } };
    if (parsed.error) throw new RegistrationError(parsed.error.reason, parsed.error.message);
    if (!parsed.status) throw new ProtocolError('ERR_PROTOCOL', 'proxy sent an empty status report');
    return parsed.status;
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}
