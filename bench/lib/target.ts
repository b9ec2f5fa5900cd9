import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Manager } from '../../src/index.js';

/**
 * Where a client worker sends its streams: a TCP address (direct, relays, CLI) or a ridproxy endpoint
 * (library path). `encryption: false` is the library-plain path: both Managers turn the end-to-end
 * channel off (they must agree); absent means the default, encrypted.
 */
export type Target = { kind: 'tcp'; host: string; port: number } | { kind: 'ridproxy'; endpoint: string; encryption?: boolean };

export function describeTarget(target: Target): string {
  return target.kind === 'tcp' ? `tcp ${target.host}:${target.port}` : target.endpoint;
}

/** Opens one TCP connection with the options every bench hop uses: no Nagle, half-close allowed. */
export function connectTcp(host: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true, allowHalfOpen: true });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Opens one stream to `target`; for ridproxy through `manager` (a later dial reuses its VC). */
export function openStream(target: Target, manager: Manager | undefined): Promise<Duplex> {
  if (target.kind === 'tcp') return connectTcp(target.host, target.port);
  if (!manager) throw new Error('a ridproxy target needs a Manager');
  return manager.dial(target.endpoint);
}
