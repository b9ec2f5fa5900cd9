import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Identity, loadIdentity, saveIdentity } from '../id/identity.js';

function configDirectory(): string {
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'ridproxy');
}

/** Where `serve` and `keygen` keep the identity when none is given, so the server's endpoint survives restarts. */
export function defaultIdentityPath(): string {
  return join(configDirectory(), 'identity.pem');
}

/** Where `start` keeps the proxy's own identity, apart from a server's on the same machine. */
export function defaultProxyIdentityPath(): string {
  return join(configDirectory(), 'proxy-identity.pem');
}

/** Loads the identity at `file`; with `create`, makes one there first if the file does not exist. */
export async function identityFrom(file: string, create: boolean): Promise<{ identity: Identity; created: boolean }> {
  if (create) {
    try {
      await access(file);
    } catch {
      const identity = Identity.generate();
      await saveIdentity(identity, file);
      return { identity, created: true };
    }
  }
  return { identity: await loadIdentity(file), created: false };
}
