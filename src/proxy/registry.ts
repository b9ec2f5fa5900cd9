import { ProtocolError, Reason } from '../errors.js';
import type { RoutingId } from '../id/routing-id.js';
import { TokenPurpose } from '../hop/handshake.js';
import { FrameType, decodeRegister, encodeDocument, encodeReason, payloadOf, type Frame } from '../wire/index.js';
import type { RegistrationVerdict, ResolvedProxyOptions } from './options.js';
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
export type RegisterOutcome =
  | { outcome: 'registered'; superseded?: string }
  | { outcome: 'refused' | 'tokenFailed'; reason: Reason; message: string }
  /** The connection closed while the registration hook was deciding: nothing to answer. */
  | { outcome: 'abandoned' };

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

  /**
   * Answers a Register frame on `conn` with RegisterOk or RegisterError. `draining` refuses every
   * registration. With an asynchronous registration hook the answer is a promise, and the
   * registration takes effect when it settles, if the connection is still there.
   */
  register(conn: ProxyConnection, frame: Frame, draining: () => boolean): RegisterOutcome | Promise<RegisterOutcome> {
    const { hop } = conn;
    const token = this.options.registrationToken;
    const mac = decodeRegister(payloadOf(frame));
    if (conn.registering) throw new ProtocolError('ERR_PROTOCOL', 'a Register before the answer to the previous one');
    if (token !== undefined && !hop.tokenMatches(TokenPurpose.Register, 0, token, mac)) {
      const message = this.tokenRefusal();
      this.refuse(conn, Reason.Unauthorized, message);
      return { outcome: 'tokenFailed', reason: Reason.Unauthorized, message };
    }
    const refusal = this.admissible(conn, draining());
    if (refusal !== undefined) return refusal;
    const key = conn.identity;
    const requested = conn.registerOptions;
    conn.registerOptions = undefined;
    const hook = this.options.registrationHook;
    const verdict = hook?.register(key, requested ?? {}, conn);
    if (!(verdict instanceof Promise)) return this.decide(conn, requested, verdict);
    conn.registering = true;
    return verdict.then(
      (settled) => {
        conn.registering = false;
        if (!conn.hop.isOpen) {
          hook!.released?.(key, conn);
          return { outcome: 'abandoned' };
        }
        // What was true before the hook was asked may not be now: check again.
        const late = 'refused' in settled ? undefined : this.admissible(conn, draining());
        if (late !== undefined) {
          hook!.released?.(key, conn);
          return late;
        }
        return this.decide(conn, requested, settled);
      },
      (err: unknown) => {
        conn.registering = false;
        if (!conn.hop.isOpen) return { outcome: 'abandoned' };
        return this.refuse(conn, Reason.Internal, `proxy ${this.endpoint} failed to decide on the registration: ${(err as Error).message}`);
      },
    );
  }

  /** The refusal the proxy's own checks make (draining, allow-list, registration limit), sent; undefined when they pass. */
  private admissible(conn: ProxyConnection, draining: boolean): RegisterOutcome | undefined {
    if (draining || conn.hop.localGoAway) return this.refuse(conn, Reason.GoingAway, 'the proxy is shutting down');
    const key = conn.identity;
    const allowed = this.options.registrationAllowList;
    if (allowed !== undefined && !allowed.has(key)) return this.refuse(conn, Reason.Unauthorized, `routing id ${key} is not on the allow-list of proxy ${this.endpoint}`);
    if (!this.routes.has(key) && this.routes.size >= this.options.maxRegistrations) {
      return this.refuse(conn, Reason.Limit, `proxy ${this.endpoint} has reached its limit of ${this.options.maxRegistrations} registered servers`);
    }
    return undefined;
  }

  /** Registers `conn` on the hook's verdict (none: no hook), or sends its refusal. */
  private decide(conn: ProxyConnection, requested: Record<string, unknown> | undefined, verdict: RegistrationVerdict | undefined): RegisterOutcome {
    if (verdict !== undefined && 'refused' in verdict) return this.refuse(conn, verdict.refused.reason, verdict.refused.message);
    const { hop } = conn;
    const key = conn.identity;
    const previous = this.routes.get(key);
    let superseded: string | undefined;
    if (previous !== undefined && previous !== conn) {
      superseded = previous.hop.peerLabel;
      // The newcomer wins, whoever it is: a restarted process must get its routing id back at once,
      // even while its old connection (dead host, network cut) still looks open here. The old
      // holder learns who took it (docs/protocol.md 7.2): if it still holds that connection, it is
      // another process with the same key, and it must not simply register again.
      previous.hop.close(Reason.Superseded, supersededMessage(key, hop.peerLabel));
      this.options.registrationHook?.released?.(key, previous);
    }
    this.routes.set(key, conn);
    // A server that sent no RegisterOptions gets the empty RegisterOk of before they existed (5.5).
    hop.send(FrameType.RegisterOk, 0, requested === undefined ? undefined : encodeDocument(verdict?.document ?? {}));
    return { outcome: 'registered', superseded };
  }

  private refuse(conn: ProxyConnection, reason: Reason, message: string): RegisterOutcome {
    conn.hop.send(FrameType.RegisterError, 0, encodeReason(reason, message));
    return { outcome: 'refused', reason, message };
  }

  private tokenRefusal(): string {
    return `proxy ${this.endpoint} requires a valid registration token`;
  }

  /** Withdraws `conn`'s registration, if it still holds it (a newer connection may have superseded it). */
  unregister(conn: ProxyConnection): void {
    if (this.routes.get(conn.identity) !== conn) return;
    this.routes.delete(conn.identity);
    this.options.registrationHook?.released?.(conn.identity, conn);
  }
}
