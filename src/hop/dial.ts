import { connect } from 'node:net';
import { InvalidArgumentError, UnreachableError, abortReason } from '../errors.js';
import type { Endpoint } from '../id/endpoint.js';
import { HopConnection, type HopConnectionOptions } from './connection.js';
import { SocketReads } from './socket-reads.js';

export interface DialHopOptions extends Omit<HopConnectionOptions, 'socket' | 'reads' | 'initiator' | 'peerLabel'> {
  /** Cancels the connect and the handshake; the rejection is the signal's reason. */
  signal?: AbortSignal;
  /** How the peer is named in errors; default its address. */
  peerLabel?: string;
}

/**
 * Opens a TCP connection to `target.address` and runs the hop handshake as initiator, pinning
 * the peer to `expectedPeer` (default `target.hopRoutingId`, when the endpoint names one): a peer
 * presenting another key is refused before this side proves anything to it.
 */
export async function dialHop(target: Endpoint, options: DialHopOptions): Promise<HopConnection> {
  const { signal } = options;
  if (signal?.aborted) throw abortReason(signal);
  if (!target.hasAddress) {
    throw new InvalidArgumentError('ERR_INVALID_ENDPOINT', `endpoint ${target} names no address to connect to; it names a process that listens nowhere, reachable only over a VC it opened`);
  }
  const reads = new SocketReads();
  const socket = connect({ host: target.host, port: target.port, noDelay: true, onread: reads.onread });
  const abort = (): void => {
    socket.destroy();
  };
  signal?.addEventListener('abort', abort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'ECONNREFUSED' ? 'connection refused' : err.code === 'ENOTFOUND' ? 'host not found' : err.message;
        reject(new UnreachableError(`cannot reach ${target.address}: ${why}`, { cause: err }));
      };
      const onClose = (): void => reject(signal?.aborted ? abortReason(signal) : new UnreachableError(`cannot reach ${target.address}: connection closed`));
      socket.once('error', onError);
      socket.once('close', onClose);
      socket.once('connect', () => {
        socket.off('error', onError);
        socket.off('close', onClose);
        resolve();
      });
    });
    return await HopConnection.establish({
      ...options,
      socket,
      reads,
      initiator: true,
      expectedPeer: options.expectedPeer ?? target.hopRoutingId,
      peerLabel: options.peerLabel ?? target.address,
    });
  } catch (err) {
    socket.destroy();
    throw signal?.aborted ? abortReason(signal) : err;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

/** The refusal for an endpoint that pins no key where one is needed before talking to the process there. */
export function unpinned(target: Endpoint, what: string): InvalidArgumentError {
  return new InvalidArgumentError(
    'ERR_UNPINNED_PEER',
    `endpoint ${target} names no routing id, so the identity of the process at ${target.address} cannot be checked before this process would ${what}; use the endpoint the proxy printed (ridp://host:port/<routing id>), or opt out of the check (--insecure-any-proxy; allowUnpinnedProxy in the library)`,
  );
}
