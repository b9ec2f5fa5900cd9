import { EventEmitter } from 'node:events';
import {
  AuthenticationError,
  ProtocolError,
  Reason,
  RegistrationError,
  VcClosedError,
  VcRejectedError,
  type RidproxyError,
} from '../errors.js';
import type { Identity } from '../id/identity.js';
import { RoutingId } from '../id/routing-id.js';
import type { HopConnection } from '../hop/connection.js';
import { MAX_VC_WINDOW, VirtualCircuit } from '../hop/circuit.js';
import { TokenPurpose } from '../hop/handshake.js';
import {
  decodeCredit,
  decodeCreditReturn,
  decodeCreditRevoke,
  decodeOpenVc,
  decodeReason,
  decodeRegistrationDocument,
  decodeVcAccepted,
  encodeDocument,
  encodeOpenVc,
  encodeReason,
  encodeRegister,
  encodeVcAccepted,
  FrameType,
  payloadOf,
  type Frame,
} from '../wire/index.js';

/** What a process decides about an incoming OpenVc: undefined to accept, or why not. */
export type VcDecision = { reason: Reason; message: string } | undefined;

export interface IncomingVc {
  dst: RoutingId;
  src: RoutingId;
  srcPublicKey: Buffer;
}

interface PendingOpen {
  dst: RoutingId;
  resolve(circuit: VirtualCircuit): void;
  reject(err: RidproxyError): void;
}

/**
 * A process's side of one hop connection (to a proxy, or directly to another process):
 * its VC table, pending VC opens and registration. Emits 'circuit' for each VC the peer
 * opened and this process accepted, and 'idle' when it has no VCs and no registration.
 */
export class Link extends EventEmitter {
  readonly hop: HopConnection;
  /** Decides incoming OpenVc frames; the default refuses them. */
  decide: (incoming: IncomingVc) => VcDecision = () => ({ reason: Reason.Refused, message: 'this process accepts no VCs' });

  private readonly identity: Identity;
  private readonly receiveWindow: number;
  private readonly maxReceiveWindow: number;
  private readonly circuits = new Map<number, VirtualCircuit>();
  private readonly pendingOpens = new Map<number, PendingOpen>();
  private pendingRegistration: { resolve(document: Record<string, unknown>): void; reject(err: RidproxyError): void } | undefined;
  private registeredValue = false;

  /** `receiveWindow` is what each VC end announces, `maxReceiveWindow` what it may grow to. */
  constructor(hop: HopConnection, identity: Identity, receiveWindow: number, maxReceiveWindow: number) {
    super();
    this.hop = hop;
    this.identity = identity;
    this.receiveWindow = receiveWindow;
    this.maxReceiveWindow = maxReceiveWindow;
    hop.on('close', (err: RidproxyError | undefined) => this.fail(err));
    hop.on('goaway', (err: RidproxyError) => {
      this.registeredValue = false;
      this.emit('goaway', err);
      this.checkIdle();
    });
  }

  /** Begins handling frames; call once the owner has attached its listeners. */
  start(): void {
    this.hop.start((frame) => this.handle(frame));
  }

  get registered(): boolean {
    return this.registeredValue;
  }

  /** Usable for new VCs: open and not told to go away. */
  get usable(): boolean {
    return this.hop.isOpen && this.hop.peerGoAway === undefined && !this.hop.localGoAway;
  }

  get circuitCount(): number {
    return this.circuits.size + this.pendingOpens.size;
  }

  /** Opens a VC to `dst` through this connection. Rejects with the proxy's or the peer's typed reason. */
  openVc(dst: RoutingId, signal?: AbortSignal, token?: string): Promise<VirtualCircuit> {
    if (!this.usable) {
      return Promise.reject(this.hop.peerGoAway ?? this.hop.error ?? new VcRejectedError(Reason.GoingAway, `connection to ${this.hop.peerLabel} is closing`));
    }
    const vci = this.hop.allocateVci();
    return new Promise<VirtualCircuit>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.pendingOpens.delete(vci)) return;
        this.hop.send(FrameType.CloseVc, vci, encodeReason(Reason.Normal, 'dial cancelled'));
        reject(signal!.reason as RidproxyError);
        this.checkIdle();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pendingOpens.set(vci, {
        dst,
        resolve: (circuit) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(circuit);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      this.hop.send(
        FrameType.OpenVc,
        vci,
        encodeOpenVc({
          dst,
          src: this.identity.routingId,
          srcPublicKey: this.identity.publicKey,
          window: this.receiveWindow,
          tokenMac: token === undefined ? undefined : this.hop.tokenMac(TokenPurpose.Dial, vci, token),
        }),
      );
    });
  }

  /**
   * Registers this process's routing ID with the proxy at the other end, with `options` (a
   * RegisterOptions document) when there are any; resolves with the proxy's RegisterOk document.
   */
  register(token?: string, options?: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.pendingRegistration) return Promise.reject(new RegistrationError(Reason.Refused, 'a registration is already in progress on this connection'));
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      this.pendingRegistration = { resolve, reject };
      if (options !== undefined) this.hop.send(FrameType.RegisterOptions, 0, encodeDocument(options));
      this.hop.send(FrameType.Register, 0, encodeRegister(token === undefined ? undefined : this.hop.tokenMac(TokenPurpose.Register, 0, token)));
    });
  }

  unregister(): void {
    if (!this.registeredValue) return;
    this.registeredValue = false;
    this.hop.send(FrameType.Unregister, 0);
    this.checkIdle();
  }

  close(): void {
    this.hop.close(Reason.Normal, 'closed');
  }

  private handle(frame: Frame): void {
    switch (frame.type) {
      case FrameType.Data: {
        const circuit = this.circuitFor(frame.vci);
        circuit?.handleData(frame.parts, frame.length);
        return;
      }
      case FrameType.Credit:
        this.circuitFor(frame.vci)?.handleCredit(decodeCredit(payloadOf(frame)));
        return;
      case FrameType.CreditRevoke:
        this.circuitFor(frame.vci)?.handleCreditRevoke(decodeCreditRevoke(payloadOf(frame)));
        return;
      case FrameType.CreditReturn:
        this.circuitFor(frame.vci)?.handleCreditReturn(decodeCreditReturn(payloadOf(frame)));
        return;
      case FrameType.CloseVc:
      case FrameType.VcRejected: {
        const { reason, message } = decodeReason(payloadOf(frame));
        const pending = this.pendingOpens.get(frame.vci);
        if (pending) {
          this.pendingOpens.delete(frame.vci);
          pending.reject(new VcRejectedError(reason, message));
          this.checkIdle();
          return;
        }
        if (frame.type === FrameType.VcRejected) throw new ProtocolError('ERR_PROTOCOL', `VcRejected for VC id ${frame.vci}, which is not being opened`);
        this.circuitFor(frame.vci)?.handleClose(reason, message);
        return;
      }
      case FrameType.VcAccepted: {
        const pending = this.pendingOpens.get(frame.vci);
        if (!pending) {
          if (this.hop.wasAllocated(frame.vci)) return;
          throw new ProtocolError('ERR_PROTOCOL', `VcAccepted for unknown VC id ${frame.vci}`);
        }
        this.pendingOpens.delete(frame.vci);
        const accepted = decodeVcAccepted(payloadOf(frame));
        const acceptor = RoutingId.fromPublicKey(accepted.publicKey);
        if (!acceptor.equals(pending.dst)) {
          // Only this VC is suspect (a misrouting proxy): refuse it, keep the connection.
          const message = `VC to ${pending.dst} was accepted by a different key (routing id ${acceptor}) via ${this.hop.peerLabel}`;
          this.hop.send(FrameType.CloseVc, frame.vci, encodeReason(Reason.Authentication, message));
          pending.reject(new AuthenticationError(message));
          this.checkIdle();
          return;
        }
        if (accepted.window === 0 || accepted.window > MAX_VC_WINDOW) {
          throw new ProtocolError('ERR_PROTOCOL', `VcAccepted announces a window of ${accepted.window} bytes (allowed: 1-${MAX_VC_WINDOW})`);
        }
        pending.resolve(this.adopt(frame.vci, accepted.window, pending.dst, accepted.publicKey));
        return;
      }
      case FrameType.OpenVc:
        this.incoming(frame);
        return;
      case FrameType.RegisterOk:
      case FrameType.RegisterError: {
        const pending = this.pendingRegistration;
        if (!pending) throw new ProtocolError('ERR_PROTOCOL', 'registration reply without a registration');
        this.pendingRegistration = undefined;
        if (frame.type === FrameType.RegisterOk) {
          const document = decodeRegistrationDocument(FrameType.RegisterOk, payloadOf(frame));
          this.registeredValue = true;
          pending.resolve(document);
        } else {
          const { reason, message } = decodeReason(payloadOf(frame));
          pending.reject(new RegistrationError(reason, `proxy ${this.hop.peerLabel} refused the registration: ${message}`));
        }
        return;
      }
      default:
        throw new ProtocolError('ERR_PROTOCOL', `frame type ${frame.type} is not valid on a process's connection`);
    }
  }

  private incoming(frame: Frame): void {
    if (!this.hop.notePeerVci(frame.vci)) throw new ProtocolError('ERR_PROTOCOL', `OpenVc reuses or misallocates VC id ${frame.vci}`);
    const open = decodeOpenVc(payloadOf(frame));
    const decision = this.hop.localGoAway
      ? { reason: Reason.GoingAway, message: 'this process is going away' }
      : this.decide({ dst: open.dst, src: open.src, srcPublicKey: open.srcPublicKey });
    if (decision) {
      this.hop.send(FrameType.VcRejected, frame.vci, encodeReason(decision.reason, decision.message));
      return;
    }
    if (open.window === 0 || open.window > MAX_VC_WINDOW) {
      throw new ProtocolError('ERR_PROTOCOL', `OpenVc announces a window of ${open.window} bytes (allowed: 1-${MAX_VC_WINDOW})`);
    }
    const circuit = this.adopt(frame.vci, open.window, open.src, open.srcPublicKey);
    this.hop.send(FrameType.VcAccepted, frame.vci, encodeVcAccepted(this.receiveWindow, this.identity.publicKey));
    this.emit('circuit', circuit);
  }

  private adopt(vci: number, sendCredit: number, remote: RoutingId, remotePublicKey: Buffer): VirtualCircuit {
    const circuit = new VirtualCircuit({
      connection: this.hop,
      vci,
      sendCredit,
      receiveWindow: this.receiveWindow,
      maxReceiveWindow: this.maxReceiveWindow,
      remoteRoutingId: remote,
      remotePublicKey,
    });
    // A dialer's circuit reaches its owner a few ticks after it exists (the open resolves, then
    // the secure handshake starts), and the peer may close it meanwhile; its owner reads the
    // reason from `errored` and 'close'.
    circuit.on('error', ignoreError);
    this.circuits.set(vci, circuit);
    circuit.once('close', () => {
      this.circuits.delete(vci);
      this.checkIdle();
    });
    return circuit;
  }

  private circuitFor(vci: number): VirtualCircuit | undefined {
    const circuit = this.circuits.get(vci);
    if (circuit) return circuit;
    if (this.hop.wasAllocated(vci)) return undefined;
    throw new ProtocolError('ERR_PROTOCOL', `frame for unknown VC id ${vci}`);
  }

  private checkIdle(): void {
    if (this.circuitCount > 0 || this.registeredValue || this.pendingRegistration) return;
    if (this.hop.peerGoAway || this.hop.localGoAway) {
      this.hop.close(Reason.Normal, 'going away');
      return;
    }
    this.emit('idle');
  }

  private fail(err: RidproxyError | undefined): void {
    this.registeredValue = false;
    const pending = [...this.pendingOpens.values()];
    this.pendingOpens.clear();
    const registration = this.pendingRegistration;
    this.pendingRegistration = undefined;
    const circuits = [...this.circuits.values()];
    if (pending.length > 0 || registration || circuits.length > 0) {
      const reason = err ?? new VcClosedError(Reason.Normal, `connection to ${this.hop.peerLabel} closed`);
      for (const open of pending) open.reject(reason);
      registration?.reject(reason);
      const code = 'reason' in reason && typeof reason.reason === 'number' ? reason.reason : Reason.ConnectionLost;
      for (const circuit of circuits) circuit.destroy(new VcClosedError(code, reason.message));
    }
    this.emit('close', err);
  }
}

function ignoreError(): void {}
