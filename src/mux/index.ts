export { YamuxSession, type YamuxSessionOptions } from './session.js';
export { YamuxStream, type YamuxStreamInit } from './stream.js';
export { FrameParser, type FrameSink } from './parser.js';
export { Flag, FrameType, GoAwayCode, HEADER_LENGTH, INITIAL_STREAM_WINDOW, PROTOCOL_VERSION, decodeHeader, encodeHeader, type FrameHeader } from './frame.js';
