import { Reason } from '../errors.js';
import { TokenPurpose } from '../hop/handshake.js';
import { FrameType, decodeStatusRequest, encodeDocument, payloadOf, type Frame } from '../wire/index.js';
import type { ResolvedProxyOptions } from './options.js';
import type { ProxyConnection } from './proxy-connection.js';

/** Servers listed in one status reply; the rest are counted, so the reply stays well under a frame. */
export const MAX_STATUS_SERVERS = 1000;

export interface ProxyServerReport {
  routingId: string;
  /** Where the server's hop connection comes from. */
  address: string;
  vcs: number;
  /** Payload bytes the server sent through the proxy (`proxy status`: SENT). */
  bytesSent: number;
  /** Payload bytes the proxy delivered to the server (`proxy status`: RECEIVED). */
  bytesReceived: number;
  connectedSeconds: number;
}

export interface ProxyStatusReport {
  endpoint: string;
  routingId: string;
  uptimeSeconds: number;
  connections: number;
  vcs: number;
  bytesForwarded: number;
  bufferedBytes: number;
  /** Registered servers: all of them in `registrations`, at most MAX_STATUS_SERVERS in `servers`. */
  registrations: number;
  servers: ProxyServerReport[];
}

/**
 * Why a status request must be refused, or undefined to answer it: with a status token, only its
 * MAC opens the report; a proxy with other tokens but none for status keeps its status off (the
 * report lists every server's address); with no token at all it answers anyone.
 */
export function statusRefusal(options: Pick<ResolvedProxyOptions, 'statusToken' | 'registrationToken' | 'dialToken'>, conn: ProxyConnection, frame: Frame, endpoint: string): string | undefined {
  const mac = decodeStatusRequest(payloadOf(frame));
  const { statusToken, registrationToken, dialToken } = options;
  if (statusToken !== undefined) {
    return conn.hop.tokenMatches(TokenPurpose.Status, 0, statusToken, mac) ? undefined : `proxy ${endpoint} shows its status only to callers presenting its status token`;
  }
  if (registrationToken !== undefined || dialToken !== undefined) return `proxy ${endpoint} has tokens but no status token: its status is off`;
  return undefined;
}

export function sendStatusRefusal(conn: ProxyConnection, message: string): void {
  conn.hop.send(FrameType.StatusResponse, 0, encodeDocument({ error: { reason: Reason.Unauthorized, message } }));
}

export function sendStatus(conn: ProxyConnection, report: ProxyStatusReport): void {
  conn.hop.send(FrameType.StatusResponse, 0, encodeDocument({ status: report }));
}
