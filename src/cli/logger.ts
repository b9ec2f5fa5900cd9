import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Log lines held in memory while stderr's reader is behind; past this they are dropped, and every
 * later line carries the number dropped so far, rather than growing the heap or stalling the process.
 */
const MAX_BUFFERED_LOG_BYTES = 16 * 1024 * 1024;

export interface CliLogger {
  log: Logger;
  /**
   * Writes `line` to stdout (what scripts wait for: an endpoint, an address) after every log line
   * logged so far, and from then on writes log lines in the background.
   */
  announce(line: string): void;
}

/**
 * Logs go to stderr so stdout stays for what scripts read (the endpoint line). JSON lines by
 * default; human-readable on a terminal or with --pretty.
 *
 * Until the command announces itself, JSON lines are written synchronously, so they precede the
 * announcement. After it they are written asynchronously: a synchronous write to a pipe whose reader
 * lags blocks the whole process (pino then sleeps with the event loop stopped), which is what a log
 * collector falling behind during a reconnect storm would do to a proxy. What is still buffered when
 * the process exits is written synchronously then.
 */
export function createLogger(options: { level?: string; pretty?: boolean }): CliLogger {
  const level = options.level ?? 'info';
  if (options.pretty ?? process.stderr.isTTY) {
    const log = pino({ level }, pretty({ destination: 2, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
    return { log, announce: (line) => void process.stdout.write(line) };
  }
  let destination = pino.destination({ fd: 2, sync: true });
  let dropped = 0;
  let announced = false;
  const log = pino(
    { level, base: { pid: process.pid }, mixin: () => (dropped === 0 ? {} : { droppedLogLines: dropped }) },
    { write: (line: string) => void destination.write(line) },
  );
  const announce = (line: string): void => {
    process.stdout.write(line);
    if (announced) return;
    announced = true;
    destination = pino.destination({ fd: 2, sync: false, maxLength: MAX_BUFFERED_LOG_BYTES });
    destination.on('drop', () => void dropped++);
    destination.on('error', () => {
      // stderr is gone (its reader exited): nothing is left to tell.
    });
    const background = destination;
    process.once('exit', () => {
      try {
        background.flushSync();
      } catch {
        // A write still in flight, or stderr closed: the lines it held are lost either way.
      }
    });
  };
  return { log, announce };
}
