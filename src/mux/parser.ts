import { MuxError } from '../errors.js';
import { FrameType, HEADER_LENGTH, PROTOCOL_VERSION, decodeHeader, isKnownFrameType, type FrameHeader } from './frame.js';

/** Receives what the parser finds, in wire order. */
export interface FrameSink {
  /**
   * A complete header. For a Data frame its body follows as `data` calls (none if empty) and then
   * `dataEnd`; the sink may check the length here, before any of the body is buffered anywhere.
   */
  frame(header: FrameHeader): void;
  /** The next piece of the current Data frame's body: a view into the transport's chunk, never a copy. */
  data(piece: Buffer): void;
  /** The current Data frame's body has been fully delivered (flags such as FIN apply after it). */
  dataEnd(header: FrameHeader): void;
  /** The byte stream is not yamux; the parser has stopped. */
  error(err: MuxError): void;
}

/**
 * Incremental yamux frame parser: bytes go in as the transport delivers them, in chunks of any
 * size, and frames come out identically however the stream was split. Only a header split across
 * chunks is copied (into a 12-byte scratch buffer); bodies are streamed out as subarrays, so the
 * parser never holds more than one partial header.
 */
export class FrameParser {
  private readonly scratch = Buffer.alloc(HEADER_LENGTH);
  private scratchLength = 0;
  /** The Data frame whose body is being read, and how many body bytes are still to come. */
  private current: FrameHeader | undefined;
  private bodyLeft = 0;
  private stopped = false;

  constructor(private readonly sink: FrameSink) {}

  /** Stops parsing for good, even in the middle of a chunk (the session was torn down). */
  stop(): void {
    this.stopped = true;
  }

  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.stopped) {
      if (this.current) {
        const take = Math.min(this.bodyLeft, chunk.length - offset);
        const piece = chunk.subarray(offset, offset + take);
        offset += take;
        this.bodyLeft -= take;
        this.sink.data(piece);
        if (this.bodyLeft === 0 && !this.stopped) this.finishData();
        continue;
      }
      let header: FrameHeader;
      if (this.scratchLength === 0 && chunk.length - offset >= HEADER_LENGTH) {
        header = decodeHeader(chunk, offset);
        offset += HEADER_LENGTH;
      } else {
        const take = Math.min(HEADER_LENGTH - this.scratchLength, chunk.length - offset);
        chunk.copy(this.scratch, this.scratchLength, offset, offset + take);
        this.scratchLength += take;
        offset += take;
        if (this.scratchLength < HEADER_LENGTH) return;
        this.scratchLength = 0;
        header = decodeHeader(this.scratch, 0);
      }
      this.onHeader(header);
    }
  }

  private onHeader(header: FrameHeader): void {
    if (header.version !== PROTOCOL_VERSION) {
      this.fail(`unsupported yamux version ${header.version} (expected ${PROTOCOL_VERSION})`);
      return;
    }
    if (!isKnownFrameType(header.type)) {
      this.fail(`unknown yamux frame type ${header.type}`);
      return;
    }
    if (header.type !== FrameType.Data) {
      this.sink.frame(header);
      return;
    }
    this.current = header;
    this.bodyLeft = header.length;
    this.sink.frame(header);
    if (header.length === 0 && !this.stopped) this.finishData();
  }

  private finishData(): void {
    const header = this.current as FrameHeader;
    this.current = undefined;
    this.sink.dataEnd(header);
  }

  private fail(message: string): void {
    this.stopped = true;
    this.sink.error(new MuxError('ERR_MUX_PROTOCOL', message));
  }
}
