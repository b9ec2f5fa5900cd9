import { InvalidArgumentError, ManagerError, Reason, VcClosedError } from '../errors.js';
import { Endpoint } from '../id/endpoint.js';
import { checkHostname } from '../id/hostname.js';
import { ridHexProblem, type RoutingId } from '../id/routing-id.js';
import { unpinned } from '../hop/dial.js';
import { withDeadline } from './deadline.js';
import type { Link } from './link.js';
import type { LinkPool } from './link-pool.js';
import type { IngressInfo, ProxyListenOptions, ProxyRegistration, ResolvedManagerOptions } from './options.js';

interface Registration extends ProxyRegistration {
  link: Link;
  finish(err: Error | undefined): void;
}

/** What the registrations need from the Manager that owns them. */
export interface RegistrationsOwner {
  readonly routingId: RoutingId;
  readonly options: ResolvedManagerOptions;
  readonly links: LinkPool;
  isClosing(): boolean;
  /** A registration came, went or failed: status() changed. */
  changed(): void;
}

/** A RegisterOk document's ingress fields (docs/protocol.md 5.5), keeping only what has the right type. */
function ingressInfo(document: Record<string, unknown>): IngressInfo {
  const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
  const ingress = typeof document.ingress === 'string' && ridHexProblem(document.ingress) === undefined ? document.ingress : undefined;
  return { hostnames: strings(document.hostnames), urls: strings(document.urls), tcp: strings(document.tcp), ...(ingress !== undefined && { routingId: ingress }) };
}

/**
 * The RegisterOptions document (docs/protocol.md 5.5) for what `options` asks of the proxy's
 * ingress, checked first; `{}` when it asks nothing.
 */
function registerOptions(options: ProxyListenOptions): Record<string, unknown> {
  const document: Record<string, unknown> = {};
  if (options.hostname !== undefined) {
    checkHostname(options.hostname);
    document.name = options.hostname;
  }
  const ports = options.publicPorts;
  if (ports !== undefined && ports.length > 0) {
    const bad = ports.find((port) => !(Number.isInteger(port) && port >= 0 && port <= 65535));
    if (bad !== undefined) throw new InvalidArgumentError('ERR_INVALID_OPTION', `invalid public port ${bad}: expected 0 (any) or 1-65535`);
    document.publicPort = ports.length === 1 ? ports[0] : ports;
  }
  return document;
}

/** A process's registrations on proxies, by name, and the last error of each name (null while registered). */
export class Registrations {
  private readonly byName = new Map<string, Registration>();
  private readonly errors = new Map<string, Error | null>();

  constructor(private readonly owner: RegistrationsOwner) {}

  get size(): number {
    return this.byName.size;
  }

  get endpoints(): string[] {
    return [...this.byName.values()].map((r) => r.endpoint);
  }

  /** A copy: status() hands it out. */
  proxyErrors(): Map<string, Error | null> {
    return new Map(this.errors);
  }

  /**
   * Registers on the proxy at `endpoint` under `name`. Resolves once the proxy confirmed; rejects
   * with the proxy's typed refusal otherwise.
   */
  async register(name: string, endpoint: string | Endpoint, options: ProxyListenOptions): Promise<ProxyRegistration> {
    if (this.byName.has(name)) throw new ManagerError('ERR_NAME_IN_USE', `a proxy registration named "${name}" is already active`);
    const proxy = typeof endpoint === 'string' ? Endpoint.parse(endpoint) : endpoint;
    let link: Link;
    let info: Record<string, unknown>;
    try {
      if (proxy.hopRoutingId.isNull() && !options.allowUnpinnedProxy) throw unpinned(proxy, 'register on it');
      link = await withDeadline(options.signal, options.timeout ?? this.owner.options.dialTimeout, `registering on proxy ${proxy.address}`, (signal) =>
        this.owner.links.linkTo(proxy, signal),
      );
      // Always a RegisterOptions, even empty: a proxy answers it with what its ingress offers (the routing id name at least).
      info = await link.register(options.token, registerOptions(options));
    } catch (err) {
      this.errors.set(name, err as Error);
      this.owner.changed();
      throw err;
    }
    if (this.owner.isClosing()) {
      link.unregister();
      throw new ManagerError('ERR_MANAGER_CLOSED', 'the manager was closed while registering');
    }
    let settle!: (err: Error | undefined) => void;
    const closed = new Promise<Error | undefined>((resolve) => {
      settle = resolve;
    });
    const registration: Registration = {
      name,
      // Clients pin the proxy too: it is the one whose key this link proved.
      endpoint: new Endpoint(proxy.host, proxy.port, this.owner.routingId, link.hop.peerRoutingId).toString(),
      ingress: ingressInfo(info),
      closed,
      link,
      close: () => {
        link.unregister();
        registration.finish(undefined);
      },
      finish: (err) => {
        if (this.byName.get(name) !== registration) return;
        this.byName.delete(name);
        link.off('close', onLost);
        link.off('goaway', onLost);
        if (err) this.errors.set(name, err);
        else this.errors.delete(name);
        this.owner.changed();
        settle(err);
      },
    };
    const onLost = (err?: Error): void => registration.finish(err ?? new VcClosedError(Reason.ConnectionLost, `connection to proxy ${proxy.address} closed`));
    link.on('close', onLost);
    link.on('goaway', onLost);
    this.byName.set(name, registration);
    this.errors.set(name, null);
    this.owner.changed();
    return registration;
  }

  closeAll(): void {
    for (const registration of [...this.byName.values()]) registration.close();
  }
}
