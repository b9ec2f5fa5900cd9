import { FrameType, HELLO_SIZE, MAX_REGISTER_OPTIONS, OPEN_VC_FIXED_SIZE, PING_SIZE, SIGNATURE_SIZE, TOKEN_MAC_SIZE, VC_ACCEPTED_SIZE } from './messages.js';

// Per-type header rules in arrays indexed by the type byte, so the decoder checks a header with a
// few loads and compares instead of a switch.
export const SCOPE_UNKNOWN = 0;
/** Connection-level: vci must be 0. */
export const SCOPE_CONNECTION = 1;
/** VC-level: vci must not be 0. */
export const SCOPE_CIRCUIT = 2;

export const FRAME_SCOPE = new Uint8Array(256);
export const FRAME_MIN_PAYLOAD = new Uint32Array(256);
/** 0xffffffff where only the receiver's maxPayload bounds the length. */
export const FRAME_MAX_PAYLOAD = new Uint32Array(256);

const ANY = 0xffffffff;
const rules: Array<[FrameType, number, number, number]> = [
  [FrameType.Hello, SCOPE_CONNECTION, HELLO_SIZE, HELLO_SIZE],
  [FrameType.Proof, SCOPE_CONNECTION, SIGNATURE_SIZE, SIGNATURE_SIZE],
  [FrameType.Register, SCOPE_CONNECTION, 0, TOKEN_MAC_SIZE],
  [FrameType.RegisterOk, SCOPE_CONNECTION, 0, ANY],
  [FrameType.RegisterError, SCOPE_CONNECTION, 2, ANY],
  [FrameType.Unregister, SCOPE_CONNECTION, 0, 0],
  [FrameType.RegisterOptions, SCOPE_CONNECTION, 2, MAX_REGISTER_OPTIONS],
  [FrameType.OpenVc, SCOPE_CIRCUIT, OPEN_VC_FIXED_SIZE, OPEN_VC_FIXED_SIZE + TOKEN_MAC_SIZE],
  [FrameType.VcAccepted, SCOPE_CIRCUIT, VC_ACCEPTED_SIZE, VC_ACCEPTED_SIZE],
  [FrameType.VcRejected, SCOPE_CIRCUIT, 2, ANY],
  [FrameType.Data, SCOPE_CIRCUIT, 0, ANY],
  [FrameType.Credit, SCOPE_CIRCUIT, 4, 4],
  [FrameType.CloseVc, SCOPE_CIRCUIT, 2, ANY],
  [FrameType.CreditRevoke, SCOPE_CIRCUIT, 4, 4],
  [FrameType.CreditReturn, SCOPE_CIRCUIT, 4, 4],
  [FrameType.Ping, SCOPE_CONNECTION, PING_SIZE, PING_SIZE],
  [FrameType.Pong, SCOPE_CONNECTION, PING_SIZE, PING_SIZE],
  [FrameType.GoAway, SCOPE_CONNECTION, 2, ANY],
  [FrameType.StatusRequest, SCOPE_CONNECTION, 0, TOKEN_MAC_SIZE],
  [FrameType.StatusResponse, SCOPE_CONNECTION, 0, ANY],
];
for (const [type, scope, min, max] of rules) {
  FRAME_SCOPE[type] = scope;
  FRAME_MIN_PAYLOAD[type] = min;
  FRAME_MAX_PAYLOAD[type] = max;
}

/** "OpenVc", or "0x7f" for a type this version does not define. */
export function frameTypeName(type: number): string {
  return FRAME_SCOPE[type] !== SCOPE_UNKNOWN ? FrameType[type] : `0x${type.toString(16).padStart(2, '0')}`;
}

/**
 * Why a header is invalid whatever the receiver's payload limit, or undefined. Shared by the
 * decoder (the peer's frames) and encodeHeader (ours, so a bug shows up here with a stack rather
 * than as a GoAway from the peer).
 */
export function headerProblem(type: number, flags: number, reserved: number, vci: number, length: number): string | undefined {
  const scope = FRAME_SCOPE[type];
  if (scope === SCOPE_UNKNOWN) return `unknown frame type ${frameTypeName(type)}`;
  if (flags === 0 && reserved === 0 && (scope === SCOPE_CONNECTION) === (vci === 0) && length >= FRAME_MIN_PAYLOAD[type] && length <= FRAME_MAX_PAYLOAD[type]) {
    return undefined;
  }
  const name = FrameType[type];
  if (flags !== 0) return `${name} frame has flags 0x${flags.toString(16).padStart(2, '0')}; this version defines none`;
  if (reserved !== 0) return `${name} frame has reserved field 0x${reserved.toString(16).padStart(4, '0')}; it must be 0`;
  if (scope === SCOPE_CONNECTION && vci !== 0) return `${name} is a connection-level frame but has vci ${vci}`;
  if (scope === SCOPE_CIRCUIT && vci === 0) return `${name} frame has vci 0; it needs a VC id`;
  const min = FRAME_MIN_PAYLOAD[type];
  const max = FRAME_MAX_PAYLOAD[type];
  return `${name} payload must be ${min === max ? `${min} bytes` : max === ANY ? `at least ${min} bytes` : `${min}-${max} bytes`}, got ${length}`;
}
