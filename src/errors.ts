/**
 * Every code ridproxy can raise. The list is closed so that `switch (err.code)` can be checked for
 * exhaustiveness, and so that a new code cannot ship without a row in docs/errors.md
 * (test/errors.test.ts compares the two and the literals in src/).
 */
export const ERROR_CODES = [
  'ERR_INVALID_ENDPOINT',
  'ERR_INVALID_RID',
  'ERR_INVALID_ADDRESS',
  'ERR_INVALID_IDENTITY',
  'ERR_IDENTITY_EXISTS',
  'ERR_INVALID_OPTION',
  'ERR_UNPINNED_PEER',
  'ERR_PROTOCOL',
  'ERR_BAD_PREFACE',
  'ERR_UNSUPPORTED_VERSION',
  'ERR_FRAME_TOO_LARGE',
  'ERR_AUTHENTICATION',
  'ERR_UNAUTHORIZED',
  'ERR_REGISTRATION_REFUSED',
  'ERR_NAME_TAKEN',
  'ERR_UNKNOWN_DESTINATION',
  'ERR_REFUSED',
  'ERR_LIMIT',
  'ERR_CONNECTION_LOST',
  'ERR_SUPERSEDED',
  'ERR_GOING_AWAY',
  'ERR_TIMEOUT',
  'ERR_INTERNAL',
  'ERR_CLOSED',
  'ERR_REMOTE',
  'ERR_INTEGRITY',
  'ERR_MUX_PROTOCOL',
  'ERR_STREAM_RESET',
  'ERR_SESSION_CLOSED',
  'ERR_STREAM_LIMIT',
  'ERR_KEEPALIVE_TIMEOUT',
  'ERR_MANAGER_CLOSED',
  'ERR_NOT_LISTENING',
  'ERR_NO_CACHED_VC',
  'ERR_MESSAGE_TOO_LARGE',
  'ERR_END_OF_FLOW',
  'ERR_NAME_IN_USE',
  'ERR_UNREACHABLE',
  'ERR_SERVICE_UNREACHABLE',
  'ERR_ABORTED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * Every error ridproxy raises is a RidproxyError with a stable `code`, so callers can
 * branch on `err.code` without parsing messages. Messages are written for a person to act on.
 * Subclasses narrow `code` to what they can carry with `declare` (no field of their own to shadow
 * this one); handing the narrow code to this constructor is what makes TypeScript check it is an
 * ErrorCode.
 */
export class RidproxyError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export type InvalidArgumentCode =
  | 'ERR_INVALID_ENDPOINT'
  | 'ERR_INVALID_RID'
  | 'ERR_INVALID_ADDRESS'
  | 'ERR_INVALID_IDENTITY'
  | 'ERR_IDENTITY_EXISTS'
  | 'ERR_INVALID_OPTION'
  | 'ERR_UNPINNED_PEER';

/** A string the user gave (endpoint, RID, address, identity file) could not be used. */
export class InvalidArgumentError extends RidproxyError {
  declare readonly code: InvalidArgumentCode;

  constructor(code: InvalidArgumentCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export type ProtocolErrorCode = 'ERR_PROTOCOL' | 'ERR_BAD_PREFACE' | 'ERR_UNSUPPORTED_VERSION' | 'ERR_FRAME_TOO_LARGE';

/** The peer broke the hop protocol (bad preface, malformed or oversized frame, unknown VC id...). */
export class ProtocolError extends RidproxyError {
  declare readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string) {
    super(code, message);
  }
}

/** The peer of a hop connection could not prove it holds the key behind its routing ID. */
export class AuthenticationError extends RidproxyError {
  declare readonly code: 'ERR_AUTHENTICATION';

  constructor(message: string) {
    super('ERR_AUTHENTICATION', message);
  }
}

/**
 * The peer was authenticated but refused: an authorize callback (this side's or the peer's, in
 * the secure channel or a Manager dial) said no. Wire refusals (reason 8) keep their own classes.
 */
export class UnauthorizedError extends RidproxyError {
  declare readonly code: 'ERR_UNAUTHORIZED';

  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UNAUTHORIZED', message, options);
  }
}

/** A sealed record failed its authentication check: the bytes were altered after the peer sealed them. */
export class IntegrityError extends RidproxyError {
  declare readonly code: 'ERR_INTEGRITY';

  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_INTEGRITY', message, options);
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
  NameTaken = 12,
  /** The destination is registered elsewhere, or may be, and cannot be reached from here now: a proxy cluster's directory or the proxy holding it is unreachable. */
  Unreachable = 13,
}

const reasonCodes = {
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
  [Reason.NameTaken]: 'ERR_NAME_TAKEN',
  [Reason.Unreachable]: 'ERR_UNREACHABLE',
} as const satisfies Record<Reason, ErrorCode>;

export type ReasonCode = (typeof reasonCodes)[Reason] | 'ERR_REMOTE';

/** The stable `code` for a wire reason; unknown numbers (from a newer peer) map to ERR_REMOTE. */
export function codeForReason(reason: number): ReasonCode {
  return reasonCodes[reason as Reason] ?? 'ERR_REMOTE';
}

/** A VC could not be opened: the proxy or the destination refused it. */
export class VcRejectedError extends RidproxyError {
  declare readonly code: ReasonCode;
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(codeForReason(reason), message);
    this.reason = reason;
  }
}

/** A VC, and so every flow on it (or the secure channel over it), ended for the stated reason. */
export class VcClosedError extends RidproxyError {
  declare readonly code: ReasonCode;
  readonly reason: number;

  constructor(reason: number, message: string, options?: { cause?: unknown }) {
    super(codeForReason(reason), message, options);
    this.reason = reason;
  }
}

/** A hop connection ended (socket closed, peer went away, or it was superseded). */
export class ConnectionClosedError extends RidproxyError {
  declare readonly code: ReasonCode;
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(codeForReason(reason), message);
    this.reason = reason;
  }
}

/** The proxy refused to register this process's routing ID. */
export class RegistrationError extends RidproxyError {
  declare readonly code: 'ERR_UNAUTHORIZED' | 'ERR_NAME_TAKEN' | 'ERR_REGISTRATION_REFUSED';
  readonly reason: number;

  constructor(reason: number, message: string) {
    super(reason === Reason.Unauthorized ? 'ERR_UNAUTHORIZED' : reason === Reason.NameTaken ? 'ERR_NAME_TAKEN' : 'ERR_REGISTRATION_REFUSED', message);
    this.reason = reason;
  }
}

export type MuxErrorCode = 'ERR_MUX_PROTOCOL' | 'ERR_STREAM_RESET' | 'ERR_SESSION_CLOSED' | 'ERR_STREAM_LIMIT' | 'ERR_KEEPALIVE_TIMEOUT';

/** A yamux session or stream failed (peer protocol violation, reset, or window overrun). */
export class MuxError extends RidproxyError {
  declare readonly code: MuxErrorCode;

  constructor(code: MuxErrorCode, message: string) {
    super(code, message);
  }
}

export type ManagerErrorCode = 'ERR_MANAGER_CLOSED' | 'ERR_NOT_LISTENING' | 'ERR_NO_CACHED_VC' | 'ERR_MESSAGE_TOO_LARGE' | 'ERR_END_OF_FLOW' | 'ERR_NAME_IN_USE';

/** An operation on a Manager that cannot proceed in its current state. */
export class ManagerError extends RidproxyError {
  declare readonly code: ManagerErrorCode;

  constructor(code: ManagerErrorCode, message: string) {
    super(code, message);
  }
}

/** A TCP address could not be reached (refused, unresolvable, or timed out while connecting). */
export class UnreachableError extends RidproxyError {
  declare readonly code: 'ERR_UNREACHABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_UNREACHABLE', message, options);
  }
}

/**
 * A `serve`/`connect` tunnel's server could not connect to the local service it forwards to.
 * Kept apart from UnreachableError because on the client it is the server's report, not this
 * side's own connect failure: the hop and the VC are fine.
 */
export class ServiceUnreachableError extends RidproxyError {
  declare readonly code: 'ERR_SERVICE_UNREACHABLE';

  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SERVICE_UNREACHABLE', message, options);
  }
}

/** What a failed listen (proxy, direct listener, `connect --local`) rejects with: the address in use, or the system's reason. */
export function cannotListen(host: string, port: number, err: unknown): UnreachableError {
  const code = (err as NodeJS.ErrnoException).code;
  const why = code === 'EADDRINUSE' ? 'the address is already in use' : (err as Error).message;
  return new UnreachableError(`cannot listen on ${host}:${port}: ${why}`, { cause: err });
}

/** The operation was cancelled by its AbortSignal. */
export class AbortError extends RidproxyError {
  declare readonly code: 'ERR_ABORTED';

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
  declare readonly code: 'ERR_TIMEOUT';

  constructor(message: string) {
    super('ERR_TIMEOUT', message);
  }
}
