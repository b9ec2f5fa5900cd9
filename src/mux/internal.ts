import type { FrameType } from './frame.js';
import type { YamuxStream } from './stream.js';

/*
 * The session and its streams call each other through symbol-keyed members so that none of it
 * shows up as (or collides with) ordinary methods on subclasses such as the manager's Flow.
 * Nothing here is re-exported from the package.
 */

/** What a stream may ask of its session. */
export interface SessionHandle {
  /** Receive window per stream that this side announces at first. */
  readonly streamWindow: number;
  /** Largest receive window a stream grows to. */
  readonly maxStreamWindow: number;
  /** The least round trip in milliseconds a ping of the session took, once one has. */
  baseRtt(): number | undefined;
  /** Largest Data body this side sends in one frame. */
  readonly maxFrameSize: number;
  /** False once the session is torn down or its transport can no longer be written. */
  canSend(): boolean;
  /** Writes a header-only frame (WindowUpdate, Ping, GoAway) ahead of any queued data. */
  sendControl(type: FrameType, flags: number, streamId: number, length: number): void;
  /** Writes one Data frame whose body is `pieces` (total `length` bytes), without copying them. */
  sendData(streamId: number, length: number, pieces: Buffer[]): void;
  /** The stream has data and send window; it will be given turns to send until it has neither. */
  schedule(stream: YamuxStream): void;
  /** The stream is fully closed or reset: free its slot. */
  release(stream: YamuxStream): void;
  /** The application took the stream: its buffered bytes stop counting against the pending-accept budget. */
  accepted(stream: YamuxStream): void;
}

export const kSessionHandle = Symbol('yamux.sessionHandle');

/** Stream members the session calls. */
export const kOpen = Symbol('yamux.open');
export const kDataStart = Symbol('yamux.dataStart');
export const kData = Symbol('yamux.data');
export const kFlags = Symbol('yamux.flags');
export const kWindowUpdate = Symbol('yamux.windowUpdate');
export const kSendSome = Symbol('yamux.sendSome');
export const kAbort = Symbol('yamux.abort');
