import { Reason } from '../errors.js';
import type { RoutingId } from '../id/routing-id.js';
import { TokenPurpose } from '../hop/handshake.js';
import { FrameType, decodeRegister, encodeDocument, encodeReason, payloadOf, type Frame } from '../wire/index.js';
import type { ResolvedProxyOptions } from './options.js';
import type { ProxyConnection } from './proxy-connection.js';

/**
 * The GoAway(Superseded) message, whose last word is the new holder's address as this proxy sees
 * it (docs/protocol.md 7.2), so the old holder can say where the other process is.
 */
export function supersededMessage(rid: string, newHolder: string, proxy?: string): string {
  const where = proxy === undefined ? '' : ` on cluster proxy ${proxy}`;
  return `routing id ${rid} was registered${where} by another connection from ${newHolder}`;
}

/**
 * The outcome of a Register frame: registered (replacing the connection from `superseded`), or
 * refused with the reason sent; `tokenFailed` means the connection must be closed.
 */
export type RegisterOutcome = { outcome: 'registered'; superseded?: string } | { outcome: 'refused' | 'tokenFailed'; reason: Reason; message: string };

/**
 * Which connection serves each routing ID, and who may register: the registration token, the
 * allow-list and the registration limit. A routing ID is always the key its connection proved.
 */
export class Registry {
  private readonly routes = new Map<string, ProxyConnection>();

  constructor(
    private readonly options: Pick<ResolvedProxyOptions, 'registrationToken' | 'registrationAllowList' | 'maxRegistrations' | 'registrationHook'>,
    private readonly endpoint: string,
  ) {}

  get size(): number {
    return this.routes.size;
  }

  lookup(rid: RoutingId): ProxyConnection | undefined {
    return this.routes.get(rid.toString());
  }

  isRegistered(conn: ProxyConnection): boolean {
    return this.routes.get(conn.identity) === conn;
  }

  entries(): IterableIterator<[string, ProxyConnection]> {
    return this.routes.entries();
  }

  /** Answers a Register frame on `conn` with RegisterOk or RegisterError. `draining` refuses every registration. */
  register(conn: ProxyConnection, frame: Frame, draining: boolean): RegisterOutcome {
    const { hop } = conn;
    const refuse = (reason: Reason, message: string): RegisterOutcome => {
      hop.send(FrameType.RegisterError, 0, encodeReason(reason, message));
      return { outcome: 'refused', reason, message };
    };
    const token = this.options.registrationToken;
    const mac = decodeRegister(payloadOf(frame));
    if (token !== undefined && !hop.tokenMatches(TokenPurpose.Register, 0, token, mac)) {
      const message = this.tokenRefusal();
      refuse(Reason.Unauthorized, message);
      return { outcome: 'tokenFailed', reason: Reason.Unauthorized, message };
    }
    if (draining || hop.localGoAway) return refuse(Reason.GoingAway, 'the proxy is shutting down');
    const key = conn.identity;
    const allowed = this.options.registrationAllowList;
    if (allowed !== undefined && !allowed.has(key)) return refuse(Reason.Unauthorized, `routing id ${key} is not on the allow-list of proxy ${this.endpoint}`);
    const previous = this.routes.get(key);
    if (previous === undefined && this.routes.size >= this.options.maxRegistrations) {
      return refuse(Reason.Limit, `proxy ${this.endpoint} has reached its limit of ${this.options.maxRegistrations} registered servers`);
    }
    const requested = conn.registerOptions;
    conn.registerOptions = undefined;
    const verdict = this.options.registrationHook?.register(key, requested ?? {});
    if (verdict !== undefined && 'refused' in verdict) return refuse(verdict.refused.reason, verdict.refused.message);
    let superseded: string | undefined;
    if (previous !== undefined && previous !== conn) {
      superseded = previous.hop.peerLabel;
      // The newcomer wins, whoever it is: a restarted process must get its routing id back at once,
      // even while its old connection (dead host, network cut) still looks open here. The old
      // holder learns who took it (docs/protocol.md 7.2): if it still holds that connection, it is
      // another process with the same key, and it must not simply register again.
      previous.hop.close(Reason.Superseded, supersededMessage(key, hop.peerLabel));
    }
    this.routes.set(key, conn);
    // A server that sent no RegisterOptions gets the empty RegisterOk of before they existed (5.5).
    hop.send(FrameType.RegisterOk, 0, requested === undefined ? undefined : encodeDocument(verdict?.document ?? {}));
    return { outcome: 'registered', superseded };
  }

  private tokenRefusal(): string {
    return `proxy ${this.endpoint} requires a valid registration token`;
  }

  /** Withdraws `conn`'s registration, if it still holds it (a newer connection may have superseded it). */
  unregister(conn: ProxyConnection): void {
    if (this.routes.get(conn.identity) === conn) this.routes.delete(conn.identity);
  }
}
