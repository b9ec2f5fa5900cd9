import { write, writeSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Log bytes held in memory while stderr's reader is behind; past this lines are dropped, and every
 * later line carries the number dropped so far, rather than growing the heap or stalling the process.
 */
const MAX_BUFFERED_LOG_BYTES = 16 * 1024 * 1024;
/** Largest batch handed to one write: a slow reader then holds up at most this much in flight. */
const MAX_BATCH_BYTES = 1024 * 1024;
/** Wait before writing again after EAGAIN (stderr is a non-blocking pipe whose reader is behind). */
const RETRY_MS = 20;

/** How long the last lines may take at exit when stderr's reader is behind. */
const EXIT_DRAIN_MS = 2_000;

const STDERR = 2;
/** Something to sleep on between EAGAINs at exit, when nothing else can run anyway. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * JSON lines for stderr, written by the thread pool one batch at a time, so that a reader falling
 * behind holds up a thread, never the event loop. A synchronous write to a pipe whose reader lags
 * blocks the whole process, which is what a log collector falling behind during a reconnect storm
 * would do to a proxy.
 */
class BackgroundStderr {
  /** Lines logged and not yet handed to a write, oldest first. */
  #queue: string[] = [];
  #queuedBytes = 0;
  /** What a write took only in part, still owed ahead of the queue. */
  #rest: Buffer | undefined;
  #inFlight = false;
  #retry: NodeJS.Timeout | undefined;
  /** Set by a write error other than EAGAIN: the reader is gone, so nothing more is written. */
  #gone = false;
  dropped = 0;

  write(line: string): void {
    if (this.#gone) return;
    // JSON lines are ASCII but for the odd name: the UTF-16 length is close enough for a bound.
    if (this.#queuedBytes + line.length > MAX_BUFFERED_LOG_BYTES) {
      this.dropped++;
      return;
    }
    this.#queue.push(line);
    this.#queuedBytes += line.length;
    this.#next();
  }

  #next(): void {
    if (this.#inFlight || this.#retry !== undefined || this.#gone) return;
    const batch = this.#rest ?? this.#takeBatch();
    if (batch === undefined) return;
    this.#rest = undefined;
    this.#inFlight = true;
    write(STDERR, batch, (err, written) => {
      this.#inFlight = false;
      if (err !== null && err.code === 'EAGAIN') {
        this.#rest = batch;
        // Unreferenced: a process that is otherwise done exits, and writes what is left at exit.
        this.#retry = setTimeout(() => {
          this.#retry = undefined;
          this.#next();
        }, RETRY_MS).unref();
        return;
      }
      if (err !== null) {
        this.#gone = true;
        this.#queue = [];
        this.#queuedBytes = 0;
        return;
      }
      if (written < batch.length) this.#rest = batch.subarray(written);
      this.#next();
    });
  }

  #takeBatch(): Buffer | undefined {
    if (this.#queue.length === 0) return undefined;
    let count = 0;
    let length = 0;
    while (count < this.#queue.length && (count === 0 || length + this.#queue[count].length <= MAX_BATCH_BYTES)) length += this.#queue[count++].length;
    const lines = this.#queue.splice(0, count);
    this.#queuedBytes -= length;
    return Buffer.from(lines.join(''), 'utf8');
  }

  /**
   * Writes what is still owed, synchronously: at exit, and before a final error line. Not while a
   * write is in flight (what follows would land before or inside its bytes). A reader that is
   * behind gets EXIT_DRAIN_MS in all; one that has stopped reading, or is gone, loses the rest.
   */
  drainSync(): void {
    if (this.#inFlight || this.#gone) return;
    clearTimeout(this.#retry);
    this.#retry = undefined;
    const deadline = performance.now() + EXIT_DRAIN_MS;
    for (let batch = this.#rest ?? this.#takeBatch(); batch !== undefined; batch = this.#takeBatch()) {
      let rest = batch;
      while (rest.length > 0) {
        try {
          rest = rest.subarray(writeSync(STDERR, rest));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || performance.now() > deadline) {
            this.#gone = true;
            return;
          }
          Atomics.wait(PAUSE, 0, 0, 5);
        }
      }
    }
    this.#rest = undefined;
  }
}

/** The background writer of this process's logger, once it has announced itself. */
let background: BackgroundStderr | undefined;

/** Writes the log lines still waiting (see BackgroundStderr.drainSync): before a final error line, so it comes last. */
export function drainLogs(): void {
  background?.drainSync();
}

export interface CliLogger {
  log: Logger;
  /**
   * Writes `line` to stdout (what scripts wait for: an endpoint, an address) after every log line
   * logged so far, and from then on writes JSON log lines in the background.
   */
  announce(line: string): void;
}

/**
 * Logs go to stderr so stdout stays for what scripts read (the endpoint line). JSON lines by
 * default; human-readable on a terminal or with --pretty, always written synchronously.
 *
 * Until the command announces itself, JSON lines are written synchronously, so they precede the
 * announcement; after it, in the background (BackgroundStderr), and what is left at exit is
 * written then.
 */
export function createLogger(options: { level?: string; pretty?: boolean }): CliLogger {
  const level = options.level ?? 'info';
  if (options.pretty ?? process.stderr.isTTY) {
    const log = pino({ level }, pretty({ destination: STDERR, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
    return { log, announce: (line) => void process.stdout.write(line) };
  }
  const inOrder = pino.destination({ fd: STDERR, sync: true });
  let writer: BackgroundStderr | undefined;
  const log = pino(
    { level, base: { pid: process.pid }, mixin: () => (writer === undefined || writer.dropped === 0 ? {} : { droppedLogLines: writer.dropped }) },
    { write: (line: string) => (writer === undefined ? inOrder.write(line) : writer.write(line)) },
  );
  const announce = (line: string): void => {
    process.stdout.write(line);
    if (writer !== undefined) return;
    writer = background = new BackgroundStderr();
    process.once('exit', () => writer!.drainSync());
  };
  return { log, announce };
}
