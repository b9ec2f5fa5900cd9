import { open } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';

export type SecretSource = 'flag' | 'file' | 'env';

export interface Secret {
  value: string;
  source: SecretSource;
}

/** One environment variable per kind of token, whichever command reads it, so one export serves `start` and its clients alike. */
const ENV = {
  registration: 'RIDPROXY_TOKEN',
  dial: 'RIDPROXY_DIAL_TOKEN',
  status: 'RIDPROXY_STATUS_TOKEN',
  cluster: 'RIDPROXY_CLUSTER_TOKEN',
} as const;

export type SecretKind = keyof typeof ENV;

export interface SecretOption {
  /** Adds `--<name> <secret>` and `--<name>-file <path>` to the command. */
  addTo(command: Command): Command;
  /** The secret from the parsed options or the environment: the flag, else the file, else the variable; undefined when none is set. */
  resolve(options: object, env?: NodeJS.ProcessEnv): Promise<Secret | undefined>;
}

/**
 * A token a command takes. A flag value is visible to every user in `ps`, so the same token can
 * also come from a file or the environment. Error messages name the flag, file or variable,
 * never the value.
 */
export function secretOption(name: string, kind: SecretKind, description: string): SecretOption {
  const envName = ENV[kind];
  // Fresh Option objects per command: commander keeps state on them, and a program may be built more than once.
  const flag = (): Option => new Option(`--${name} <secret>`, `${description}; else read from --${name}-file, else $${envName} (a flag value shows in ps)`);
  const file = (): Option => new Option(`--${name}-file <path>`, `read --${name} from this file (UTF-8, one trailing newline dropped; must not be readable by group or others)`);
  const flagKey = flag().attributeName();
  const fileKey = file().attributeName();
  return {
    addTo: (command) => command.addOption(flag()).addOption(file()),
    async resolve(options, env = process.env) {
      const values = options as Record<string, string | undefined>;
      const fromFlag = values[flagKey];
      const path = values[fileKey];
      if (fromFlag !== undefined && path !== undefined) throw invalid(`give --${name} or --${name}-file, not both`);
      if (fromFlag !== undefined) {
        if (fromFlag === '') throw invalid(`--${name} is empty`);
        return { value: fromFlag, source: 'flag' };
      }
      if (path !== undefined) return { value: await readTokenFile(path), source: 'file' };
      const fromEnv = env[envName];
      if (fromEnv === undefined) return undefined;
      if (fromEnv === '') throw invalid(`${envName} is set but empty`);
      return { value: fromEnv, source: 'env' };
    },
  };
}

async function readTokenFile(file: string): Promise<string> {
  const handle = await open(file, 'r').catch((err: unknown) => {
    throw unreadable(file, err);
  });
  try {
    // The mode is read from the open handle, so it is the mode of the file whose bytes are used.
    const { mode } = await handle.stat();
    const text = await handle.readFile('utf8').catch((err: unknown) => {
      throw unreadable(file, err);
    });
    // Windows has no group/other bits: every file reports 0666 there, so the check would refuse them all.
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw invalid(`token file ${file} is readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`);
    }
    // Editors and `echo` end files with a newline that is no part of the token.
    const token = text.replace(/\r?\n$/, '');
    if (token === '') throw invalid(`token file ${file} is empty`);
    return token;
  } finally {
    await handle.close();
  }
}

function unreadable(file: string, err: unknown): InvalidArgumentError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
  return invalid(`token file ${file}: ${reason}`);
}

function invalid(message: string): InvalidArgumentError {
  return new InvalidArgumentError('ERR_INVALID_OPTION', message);
}
