import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { secretOption } from '../../src/cli/secrets.js';

const dial = secretOption('dial-token', 'dial', 'the dial token');
const dir = mkdtempSync(join(tmpdir(), 'ridproxy-secrets-'));

function tokenFile(content: string, mode = 0o600): string {
  const file = join(dir, `${Math.random().toString(16).slice(2)}.token`);
  writeFileSync(file, content);
  chmodSync(file, mode);
  return file;
}

/** Parses argv the way the CLI does, then resolves the dial token against `env`. */
function resolve(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const command = dial.addTo(new Command('test').exitOverride());
  command.parse(argv, { from: 'user' });
  return dial.resolve(command.opts(), env);
}

describe('secretOption', () => {
  it('takes the flag over the file and the environment, the file over the environment', async () => {
    const file = tokenFile('from-file\n');
    const env = { RIDPROXY_DIAL_TOKEN: 'from-env' };
    await expect(resolve(['--dial-token', 'from-flag'], env)).resolves.toEqual({ value: 'from-flag', source: 'flag' });
    await expect(resolve(['--dial-token-file', file], env)).resolves.toEqual({ value: 'from-file', source: 'file' });
    await expect(resolve([], env)).resolves.toEqual({ value: 'from-env', source: 'env' });
    await expect(resolve([])).resolves.toBeUndefined();
  });

  it('drops exactly one trailing \\n or \\r\\n from a file', async () => {
    await expect(resolve(['--dial-token-file', tokenFile('a\r\n')])).resolves.toMatchObject({ value: 'a' });
    await expect(resolve(['--dial-token-file', tokenFile('a\n\n')])).resolves.toMatchObject({ value: 'a\n' });
    await expect(resolve(['--dial-token-file', tokenFile('a')])).resolves.toMatchObject({ value: 'a' });
  });

  it('refuses the flag together with its file', async () => {
    await expect(resolve(['--dial-token', 'x', '--dial-token-file', tokenFile('x')])).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: 'give --dial-token or --dial-token-file, not both',
    });
  });

  it('refuses a file open to group or others, naming its mode', async () => {
    for (const mode of [0o640, 0o604, 0o620]) {
      const file = tokenFile('x', mode);
      await expect(resolve(['--dial-token-file', file])).rejects.toMatchObject({
        code: 'ERR_INVALID_OPTION',
        message: `token file ${file} is readable by others (mode 0${mode.toString(8)}); chmod 600 it`,
      });
    }
  });

  it('refuses an empty token from each source', async () => {
    await expect(resolve(['--dial-token', ''])).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: '--dial-token is empty' });
    const file = tokenFile('\r\n');
    await expect(resolve(['--dial-token-file', file])).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: `token file ${file} is empty` });
    await expect(resolve([], { RIDPROXY_DIAL_TOKEN: '' })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: 'RIDPROXY_DIAL_TOKEN is set but empty' });
  });

  it('names a missing or unreadable file, never its content', async () => {
    const missing = join(dir, 'missing.token');
    await expect(resolve(['--dial-token-file', missing])).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: `token file ${missing}: no such file` });
    await expect(resolve(['--dial-token-file', dir])).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: `token file ${dir}: is a directory` });
  });
});
