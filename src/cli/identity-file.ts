import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Identity, loadIdentity, saveIdentity } from '../id/identity.js';

function configDirectory(): string {
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'ridproxy');
}

/** Where `keygen` writes an identity when no --out is given (and where `serve` kept its one identity before it had one per service). */
export function defaultIdentityPath(): string {
  return join(configDirectory(), 'identity.pem');
}

/**
 * Where `serve --forward host:port` keeps its identity when none is given: one per forwarded
 * service, so two serves on one machine (ssh and http, say) never share a routing id and displace
 * each other on the proxy, and each one's endpoint survives restarts.
 */
export function defaultServeIdentityPath(host: string, port: number): string {
  return join(configDirectory(), `serve-${host.replace(/[^A-Za-z0-9.-]/g, '_')}-${port}.pem`);
}

/** The help text's name for defaultServeIdentityPath. */
export function defaultServeIdentityPattern(): string {
  return join(configDirectory(), 'serve-<host>-<port>.pem');
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
