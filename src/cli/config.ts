import { readFileSync } from 'node:fs';
import type { Command, Option } from 'commander';
import { parse as parseToml } from 'smol-toml';
import { InvalidArgumentError } from '../errors.js';

/**
 * Options from somewhere other than the command line. For each option a command has, in this
 * order, the first that sets it wins: the command line, the environment variable
 * RIDPROXY_<OPTION> (`--idle-timeout` is RIDPROXY_IDLE_TIMEOUT), the `[<command>]` table of the
 * TOML file given by `--config` (or $RIDPROXY_CONFIG), that file's top level, then the default.
 * Tokens themselves are not taken from here: their variables and `--*-file` options are read
 * by the commands (secrets.ts), and a token in a config file would be a second copy of it.
 */

export const CONFIG_ENV = 'RIDPROXY_CONFIG';
const SECRET_OPTIONS = new Set(['token', 'dialToken', 'statusToken', 'clusterToken']);
const NOT_CONFIGURABLE = new Set(['config', 'help', 'version']);

type Table = Record<string, unknown>;

/**
 * Adds `--config <file>` to every command of `program` and fills each command's options from the
 * environment and that file before it runs (before its required options are checked).
 */
export function useConfigSources(program: Command): void {
  // A top-level key may be meant for any command that has such an option.
  const everyName = new Set(program.commands.flatMap((command) => command.options.flatMap((option) => (option.long ? [option.long.slice(2)] : []))));
  for (const command of program.commands) {
    command.option('--config <file>', `read options from this TOML file: a key per long option (idle-timeout = 1000), at the top level or under [${command.name()}]; the command line and RIDPROXY_<OPTION> variables take precedence (default: $${CONFIG_ENV})`);
    command.hook('preAction', () => applySources(command, everyName, process.env));
  }
}

function applySources(command: Command, everyName: ReadonlySet<string>, env: NodeJS.ProcessEnv): void {
  const options = command.options.filter((option) => option.long !== undefined && !NOT_CONFIGURABLE.has(option.attributeName()));
  for (const option of options) {
    const key = option.attributeName();
    if (SECRET_OPTIONS.has(key) || setBy(command, key)) continue;
    const variable = envName(option);
    const value = env[variable];
    if (value !== undefined) command.setOptionValueWithSource(key, convert(option, value, variable), 'env');
  }
  const path = (command.getOptionValue('config') as string | undefined) ?? env[CONFIG_ENV];
  if (path === undefined) return;
  const file = readConfig(path);
  const section = file[command.name()];
  const own = isTable(section) ? section : {};
  const byName = new Map(options.map((option) => [option.long!.slice(2), option]));
  for (const name of Object.keys(own)) {
    if (!byName.has(name)) throw invalid(`[${command.name()}] of ${path}: proxy ${command.name()} has no option --${name} (see proxy ${command.name()} --help)`);
  }
  for (const [name, value] of Object.entries(file)) {
    if (!isTable(value) && !everyName.has(name)) throw invalid(`${path}: no command has an option --${name}`);
  }
  for (const [name, option] of byName) {
    const key = option.attributeName();
    if (setBy(command, key) || command.getOptionValueSource(key) === 'env') continue;
    const value = name in own ? own[name] : file[name];
    if (value === undefined || isTable(value)) continue;
    if (SECRET_OPTIONS.has(key)) throw invalid(`${path}: put --${name} in --${name}-file or $${envName(option)}, not in the config file`);
    command.setOptionValueWithSource(key, convert(option, value, `${name} in ${path}`), 'config');
  }
}

/**
 * The value option `key` of `command` takes now, by the precedence above, with the config file
 * read again (for SIGHUP): the command line and the environment still win over the file, and a
 * key removed from the file falls back to the default. Throws, as at start, on a file that
 * cannot be read or parsed, leaving the caller's value in force.
 */
export function reloadedOption(command: Command, key: string): { value: unknown; source: 'cli' | 'env' | 'config' | 'default' } {
  const option = command.options.find((o) => o.attributeName() === key);
  if (option === undefined) throw new Error(`proxy ${command.name()} has no option ${key}`);
  const current = command.getOptionValueSource(key);
  if (current === 'cli' || current === 'env') return { value: command.getOptionValue(key), source: current === 'cli' ? 'cli' : 'env' };
  const path = (command.getOptionValue('config') as string | undefined) ?? process.env[CONFIG_ENV];
  if (path !== undefined) {
    const file = readConfig(path);
    const section = file[command.name()];
    const name = option.long!.slice(2);
    const value = isTable(section) && name in section ? section[name] : file[name];
    if (value !== undefined && !isTable(value)) return { value: convert(option, value, `${name} in ${path}`), source: 'config' };
  }
  return { value: option.defaultValue, source: 'default' };
}

function setBy(command: Command, key: string): boolean {
  return command.getOptionValueSource(key) === 'cli';
}

function envName(option: Option): string {
  return `RIDPROXY_${option.long!.slice(2).replace(/-/g, '_').toUpperCase()}`;
}

/** A value from the environment or the file, checked as the command line would check it. */
function convert(option: Option, value: unknown, where: string): unknown {
  if (option.isBoolean()) {
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0' || value === '') return false;
    throw invalid(`${where} must be true or false, got ${JSON.stringify(value)}`);
  }
  if (typeof value !== 'string' && typeof value !== 'number') throw invalid(`${where} must be a string or a number, got ${JSON.stringify(value)}`);
  const text = String(value);
  if (option.argChoices && !option.argChoices.includes(text)) throw invalid(`${where} must be one of ${option.argChoices.join(', ')}, got ${text}`);
  try {
    return option.parseArg ? option.parseArg(text, undefined) : text;
  } catch (err) {
    throw invalid(`${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function readConfig(path: string): Table {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw invalid(`cannot read the config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return parseToml(text) as Table;
  } catch (err) {
    throw invalid(`${path} is not valid TOML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
}

function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function invalid(message: string): InvalidArgumentError {
  return new InvalidArgumentError('ERR_INVALID_OPTION', message);
}
