import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError, Reason } from '../errors.js';
import { LABEL_RE, hostnameProblem, routingIdLabel, routingIdOfLabel } from '../id/hostname.js';
import { RoutingId } from '../id/routing-id.js';
import type { RegistrationHook, RegistrationVerdict } from '../proxy/options.js';

interface Reservation {
  routingId: string;
  claimedAt: string;
}

interface NamesFile {
  version: 1;
  names: Record<string, Reservation>;
}

/**
 * The host names of a proxy's web ingress, under one domain. Every server has the name of its
 * routing id; a name asked for (RegisterOptions `name`) is reserved for the first key that asks,
 * for good: the reservations are kept in a file, so neither a restart nor another key can take
 * one. The operator releases a name with `release` (`proxy names release`).
 */
export class NameDirectory implements RegistrationHook {
  private reservations = new Map<string, Reservation>();

  /**
   * @param domain the ingress domain, e.g. `tunnel.example.com`
   * @param file where reservations are kept; none keeps them in memory only
   * @param urls the URLs a host name is reachable at (one per ingress listener)
   * @param ingressRoutingId the routing id the ingress dials servers with, which RegisterOk tells them (10.3)
   */
  constructor(
    readonly domain: string,
    private readonly file: string | undefined,
    private readonly urls: (hostname: string) => string[],
    private readonly ingressRoutingId?: RoutingId,
  ) {
    const problem = domainProblem(domain);
    if (problem !== undefined) throw new InvalidArgumentError('ERR_INVALID_OPTION', `invalid domain ${JSON.stringify(domain)}: ${problem}`);
    this.domain = domain.toLowerCase().replace(/\.$/, '');
    this.reload();
  }

  /** Reads the reservations file again (SIGHUP); a file that does not exist yet means none. */
  reload(): void {
    if (this.file === undefined) return;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `cannot read the names file ${this.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    let parsed: NamesFile;
    try {
      parsed = JSON.parse(text) as NamesFile;
    } catch (err) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `the names file ${this.file} is not JSON: ${(err as Error).message}`);
    }
    const next = new Map<string, Reservation>();
    for (const [name, reservation] of Object.entries(parsed.names ?? {})) {
      if (hostnameProblem(name) === undefined && typeof reservation?.routingId === 'string') next.set(name, reservation);
    }
    this.reservations = next;
  }

  /** The host names of `rid`: its reserved names, then the one of its routing id. */
  hostnamesOf(rid: string): string[] {
    const names = [...this.reservations].filter(([, r]) => r.routingId === rid).map(([name]) => `${name}.${this.domain}`);
    return [...names, `${routingIdLabel(RoutingId.parse(rid))}.${this.domain}`];
  }

  /** The routing id a request's host (no port) is for, or undefined for a host this ingress has no name for. */
  resolve(host: string): { routingId: RoutingId; label: string } | undefined {
    const h = host.toLowerCase().replace(/\.$/, '');
    if (!h.endsWith(`.${this.domain}`)) return undefined;
    const label = h.slice(0, -this.domain.length - 1);
    if (label.includes('.')) return undefined;
    const byRid = routingIdOfLabel(label);
    if (byRid !== undefined) return { routingId: byRid, label };
    const reservation = this.reservations.get(label);
    return reservation === undefined ? undefined : { routingId: RoutingId.parse(reservation.routingId), label };
  }

  /** Releases `name` whoever holds it; false when it was not reserved. */
  release(name: string): boolean {
    if (!this.reservations.delete(name)) return false;
    this.save();
    return true;
  }

  register(routingId: string, options: Record<string, unknown>): RegistrationVerdict {
    const name = options.name;
    if (name !== undefined) {
      if (typeof name !== 'string') return { refused: { reason: Reason.Refused, message: 'the name asked for is not a string' } };
      const problem = hostnameProblem(name);
      if (problem !== undefined) return { refused: { reason: Reason.Refused, message: `invalid host name: ${problem}` } };
      const held = this.reservations.get(name);
      if (held !== undefined && held.routingId !== routingId) {
        return { refused: { reason: Reason.NameTaken, message: `the name ${name}.${this.domain} is reserved for another key` } };
      }
      if (held === undefined) {
        this.reservations.set(name, { routingId, claimedAt: new Date().toISOString() });
        this.save();
      }
    }
    const hostnames = this.hostnamesOf(routingId);
    const urls = hostnames.flatMap((hostname) => this.urls(hostname));
    return { document: { hostnames, urls, ...(this.ingressRoutingId !== undefined && { ingress: this.ingressRoutingId.toString() }) } };
  }

  private save(): void {
    if (this.file === undefined) return;
    const doc: NamesFile = { version: 1, names: Object.fromEntries(this.reservations) };
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    // Written aside and renamed, so a crash never leaves half a file (and every reservation lost).
    const temp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
    chmodSync(temp, 0o600);
    renameSync(temp, this.file);
  }

  /** Every reserved name and the routing id it is reserved for. */
  list(): Array<{ name: string; routingId: string; claimedAt: string }> {
    return [...this.reservations].map(([name, r]) => ({ name, routingId: r.routingId, claimedAt: r.claimedAt }));
  }
}

/** The reservations in a names file, to list or release them (`proxy names`) while no domain is known. */
export function namesFile(file: string): NameDirectory {
  return new NameDirectory('names.invalid', file, () => []);
}

function domainProblem(domain: string): string | undefined {
  const d = domain.toLowerCase().replace(/\.$/, '');
  if (d.length === 0 || d.length > 200) return 'expected a DNS name such as tunnel.example.com';
  const bad = d.split('.').find((label) => !LABEL_RE.test(label));
  return bad === undefined ? undefined : `bad label ${JSON.stringify(bad)}`;
}
