/**
 * Every error ridproxy raises is a RidproxyError with a stable `code` string, so callers can
 * branch on `err.code` without parsing messages. Messages are written for a person to act on.
 */
export class RidproxyError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A string the user gave (endpoint, RID, address, identity file) could not be used. */
export class InvalidArgumentError extends RidproxyError {
  constructor(code: 'ERR_INVALID_ENDPOINT' | 'ERR_INVALID_RID' | 'ERR_INVALID_ADDRESS' | 'ERR_INVALID_IDENTITY' | 'ERR_IDENTITY_EXISTS' | 'ERR_INVALID_OPTION' | 'ERR_UNPINNED_PEER', message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** The peer broke the hop protocol (bad preface, malformed or oversized frame, unknown VC id...). */
export class ProtocolError extends RidproxyError {
  constructor(code: 'ERR_PROTOCOL' | 'ERR_BAD_PREFACE' | 'ERR_UNSUPPORTED_VERSION' | 'ERR_FRAME_TOO_LARGE', message: string) {
    super(code, message);
  }
}

/** The peer of a hop connection could not prove it holds the key behind its routing ID. */
export class AuthenticationError extends RidproxyError {
  constructor(message: string) {
    super('ERR_AUTHENTICATION', message);
  }
}

/** Numeric reasons carried by VcRejected, CloseVc, RegisterError and GoAway frames. */
export enum Reason {
  Normal = 0,
  UnknownDestination = 1,
  Refused = 2,
  Limit = 3,
  ConnectionLost = 4,
  Protocol = 5,
  Superseded = 6,
  GoingAway = 7,
  Unauthorized = 8,
  Timeout = 9,
  Internal = 10,
  Authentication = 11,
}

const reasonCodes: Record<Reason, string> = {
  [Reason.Normal]: 'ERR_CLOSED',
  [Reason.UnknownDestination]: 'ERR_UNKNOWN_DESTINATION',
  [Reason.Refused]: 'ERR_REFUSED',
  [Reason.Limit]: 'ERR_LIMIT',
  [Reason.ConnectionLost]: 'ERR_CONNECTION_LOST',
  [Reason.Protocol]: 'ERR_PROTOCOL',
  [Reason.Superseded]: 'ERR_SUPERSEDED',
  [Reason.GoingAway]: 'ERR_GOING_AWAY',
  [Reason.Unauthorized]: 'ERR_UNAUTHORIZED',
  [Reason.Timeout]: 'ERR_TIMEOUT',
  [Reason.Internal]: 'ERR_INTERNAL',
  [Reason.Authentication]: 'ERR_AUTHENTICATION',
};

/** The stable `code` string for a wire reason; unknown numbers (from a newer peer) map to ERR_REMOTE. */
export function codeForReason(reason: number): string {
  return reasonCodes[reason as Reason] ?? 'ERR_REMOTE';
}

/** A VC could not be opened: the proxy or the destination refused it. */
export class VcRejectedError extends RidproxyError {
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(codeForReason(reason), message);
    this.reason = reason;
  }
}

/** A VC, and so every flow on it, ended for the stated reason. */
export class VcClosedError extends RidproxyError {
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(codeForReason(reason), message);
    this.reason = reason;
  }
}

/** A hop connection ended (socket closed, peer went away, or it was superseded). */
export class ConnectionClosedError extends RidproxyError {
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(codeForReason(reason), message);
    this.reason = reason;
  }
}

/** The proxy refused to register this process's routing ID. */
export class RegistrationError extends RidproxyError {
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(reason === Reason.Unauthorized ? 'ERR_UNAUTHORIZED' : 'ERR_REGISTRATION_REFUSED', message);
    this.reason = reason;
  }
}

/** A yamux session or stream failed (peer protocol violation, reset, or window overrun). */
export class MuxError extends RidproxyError {
  constructor(code: 'ERR_MUX_PROTOCOL' | 'ERR_STREAM_RESET' | 'ERR_SESSION_CLOSED' | 'ERR_STREAM_LIMIT' | 'ERR_KEEPALIVE_TIMEOUT', message: string) {
    super(code, message);
  }
}

/** An operation on a Manager that cannot proceed in its current state. */
export class ManagerError extends RidproxyError {
  constructor(code: 'ERR_MANAGER_CLOSED' | 'ERR_NOT_LISTENING' | 'ERR_NO_CACHED_VC' | 'ERR_MESSAGE_TOO_LARGE' | 'ERR_END_OF_FLOW' | 'ERR_NAME_IN_USE', message: string) {
    super(code, message);
  }
}

/** A TCP address could not be reached (refused, unresolvable, or timed out while connecting). */
export class UnreachableError extends RidproxyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UNREACHABLE', message, options);
  }
}

/** The operation was cancelled by its AbortSignal. */
export class AbortError extends RidproxyError {
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) {
    super('ERR_ABORTED', message, options);
  }
}

/** What an aborted operation rejects with: the signal's reason when it is one of ours (a timeout), else an AbortError. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason instanceof Error && signal.reason.name !== 'AbortError' ? signal.reason : new AbortError(undefined, { cause: signal.reason });
}

/** The operation did not finish within its time limit. */
export class TimeoutError extends RidproxyError {
  constructor(message: string) {
    super('ERR_TIMEOUT', message);
  }
}
