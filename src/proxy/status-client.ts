import { ProtocolError, RegistrationError, TimeoutError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import type { HopConnection } from '../hop/connection.js';
import { dialHop, unpinned } from '../hop/dial.js';
import { TokenPurpose } from '../hop/handshake.js';
import { FrameType, encodeStatusRequest, payloadOf } from '../wire/index.js';
import type { ProxyStatusReport } from './proxy.js';

export interface StatusQueryOptions {
  /** The proxy's status token, when it has one: without it the proxy withholds its status. */
  token?: string;
  /** Accept whatever process answers at an endpoint that names no routing id (its key is not checked). */
  allowUnpinnedProxy?: boolean;
  identity?: Identity;
  /** Milliseconds for the whole query. Default 10 s. */
  timeout?: number;
}

/** Asks the proxy at `endpoint` for its registered servers and traffic counters. */
export async function queryProxyStatus(endpoint: string | Endpoint, options: StatusQueryOptions = {}): Promise<ProxyStatusReport> {
  const target = typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint;
  if (target.hopRoutingId.isNull() && !options.allowUnpinnedProxy) throw unpinned(target, 'ask it for its status');
  const timeout = options.timeout ?? 10_000;
  let hop: HopConnection | undefined;
  const abort = new AbortController();
  const timer = setTimeout(() => {
    abort.abort(new TimeoutError(`proxy ${target.address} did not answer within ${timeout} ms`));
    hop?.destroy();
  }, timeout);
  try {
    hop = await dialHop(target, {
      identity: options.identity ?? Identity.generate(),
      keepAliveInterval: 0,
      handshakeTimeout: timeout,
      peerLabel: `proxy ${target.address}`,
      signal: abort.signal,
    });
    const connection = hop;
    const body = await new Promise<string>((resolve, reject) => {
      connection.start((frame) => {
        if (frame.type !== FrameType.StatusResponse) throw new ProtocolError('ERR_PROTOCOL', `proxy answered a status request with frame type ${frame.type}`);
        resolve(payloadOf(frame).toString('utf8'));
      });
      void connection.closed.then((err) => reject(abort.signal.aborted ? abort.signal.reason : (err ?? new ProtocolError('ERR_PROTOCOL', 'proxy closed the connection without answering'))));
      connection.send(FrameType.StatusRequest, 0, encodeStatusRequest(options.token === undefined ? undefined : connection.tokenMac(TokenPurpose.Status, 0, options.token)));
    });
    connection.close();
    const parsed = JSON.parse(body) as { status?: ProxyStatusReport; error?: { reason: number; message: string } };
    if (parsed.error) throw new RegistrationError(parsed.error.reason, parsed.error.message);
    if (!parsed.status) throw new ProtocolError('ERR_PROTOCOL', 'proxy sent an empty status report');
    return parsed.status;
  } finally {
    clearTimeout(timer);
    hop?.destroy();
  }
}
