import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Logs go to stderr so stdout stays for what scripts read (the endpoint line). JSON lines by
 * default; human-readable on a terminal or with --pretty.
 */
export function createLogger(options: { level?: string; pretty?: boolean }): Logger {
  const level = options.level ?? 'info';
  if (options.pretty ?? process.stderr.isTTY) {
    return pino({ level }, pretty({ destination: 2, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}
