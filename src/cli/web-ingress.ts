import { join, dirname } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { formatAddress, parseAddress } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import { IngressDialer } from '../ingress/dialer.js';
import { HttpIngress } from '../ingress/http.js';
import { NameDirectory } from '../ingress/names.js';
import { PublicPorts, parsePortRange } from '../ingress/ports.js';
import { TlsPassthroughIngress } from '../ingress/tls.js';
import { TlsTermination } from '../tunnel/tls-termination.js';
import type { Proxy } from '../proxy/proxy.js';
import type { RegistrationHook } from '../proxy/options.js';
import { composeRegistrationHooks } from '../proxy/registration-hooks.js';
import type { Logger } from './logger.js';

export interface WebIngressOptions {
  http?: string;
  https?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsPassthrough?: string;
  domain?: string;
  namesFile?: string;
  trustForwarded?: boolean;
  tcpPorts?: string;
  maxPortsPerKey?: number;
}

/** The proxy's ingress, as decided before it listens: the registration hook is part of the proxy. */
export interface WebIngress {
  /** Host names under --domain, for --http and --tls-passthrough. */
  names?: NameDirectory;
  /** Public TCP ports, for --tcp-ports. */
  ports?: PublicPorts;
  /** What the proxy consults on every registration: the names, then the ports. */
  hook: RegistrationHook;
  /** The identity the ingress dials servers with. */
  identity: Identity;
}

/** Where `start` keeps the ingress's name reservations by default: next to the proxy's identity. */
export function defaultNamesPath(identityPath: string): string {
  return join(dirname(identityPath), 'names.json');
}

/** Throws ERR_INVALID_OPTION for ingress options that make no sense together. */
export function checkWebIngressOptions(options: WebIngressOptions): void {
  const listeners = (['http', 'https', 'tlsPassthrough'] as const).filter((name) => options[name] !== undefined);
  const flag = { http: '--http', https: '--https', tlsPassthrough: '--tls-passthrough' };
  if (listeners.length > 0 && options.domain === undefined) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `${flag[listeners[0]!]} needs --domain: the ingress routes by host names under the domain`);
  }
  if (listeners.length === 0 && options.domain !== undefined) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', '--domain needs --http, --https or --tls-passthrough: it names servers for an ingress that routes by host name');
  }
  const hasCertificate = options.tlsCert !== undefined || options.tlsKey !== undefined;
  if (options.https !== undefined && (options.tlsCert === undefined || options.tlsKey === undefined)) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', '--https needs --tls-cert and --tls-key: the certificate (a wildcard for *.<domain>) the proxy terminates TLS with');
  }
  if (options.https === undefined && hasCertificate) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', '--tls-cert and --tls-key are for --https: --tls-passthrough holds no certificate (the servers terminate TLS)');
  }
}

/**
 * The ingress's registration hook and identity for `start --domain` and `--tcp-ports`, made
 * before the proxy listens (they decide on registrations): one identity per run, since what
 * servers trust is what the proxy they pinned tells them. Undefined when the proxy has no ingress.
 */
export function webIngress(options: WebIngressOptions, identityPath: string): WebIngress | undefined {
  checkWebIngressOptions(options);
  if (options.domain === undefined && options.tcpPorts === undefined) return undefined;
  const identity = Identity.generate();
  const listeners = ([['http', options.http, 80], ['https', options.https, 443], ['https', options.tlsPassthrough, 443]] as const).flatMap(([scheme, address, defaultPort]) =>
    address === undefined ? [] : [{ scheme, port: parseAddress(address, '0.0.0.0').port, defaultPort }],
  );
  const urls = (hostname: string): string[] => listeners.map(({ scheme, port, defaultPort }) => `${scheme}://${hostname}${port === defaultPort ? '' : `:${port}`}/`);
  const names = options.domain === undefined ? undefined : new NameDirectory(options.domain, options.namesFile ?? defaultNamesPath(identityPath), urls, identity.routingId);
  let ports: PublicPorts | undefined;
  if (options.tcpPorts !== undefined) {
    const range = parsePortRange(options.tcpPorts);
    ports = new PublicPorts({ ...range, maxPerKey: options.maxPortsPerKey, ingressRoutingId: identity.routingId });
  }
  const hooks = [names, ports].filter((hook): hook is NameDirectory | PublicPorts => hook !== undefined);
  return { names, ports, identity, hook: hooks.length === 1 ? hooks[0]! : composeRegistrationHooks(...hooks) };
}

/** The running ingress listeners. */
export interface StartedWebIngress {
  stop(): Promise<void>;
  /** Reads --https's certificate and key again (SIGHUP); on failure throws and keeps the one in use. */
  reloadCertificate(): Promise<void>;
}

/**
 * Starts the ingress listeners of `start --http`, `--https`, `--tls-passthrough` and
 * `--tcp-ports`, all reaching servers through one dialer (one identity, VCs shared).
 */
export async function startWebIngress(proxy: Proxy, web: WebIngress, options: WebIngressOptions, dialToken: () => string | undefined, log: Logger): Promise<StartedWebIngress> {
  const dialer = new IngressDialer(proxy, web.identity, dialToken);
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    await Promise.all(stops.splice(0).map((s) => s()));
    await dialer.close();
  };
  let reloadCertificate = async (): Promise<void> => undefined;
  try {
    const { names, ports } = web;
    if (options.http !== undefined && names !== undefined) {
      const { host, port } = parseAddress(options.http, '0.0.0.0');
      const ingress = await HttpIngress.listen(host, port, names, dialer, { trustForwarded: options.trustForwarded });
      stops.push(() => ingress.close());
      log.info({ http: formatAddress(ingress.host, ingress.port), domain: names.domain }, `HTTP ingress for *.${names.domain} on ${ingress.address}`);
    }
    if (options.https !== undefined && names !== undefined) {
      const { host, port } = parseAddress(options.https, '0.0.0.0');
      const tls = await TlsTermination.load(options.tlsCert!, options.tlsKey!);
      const ingress = await HttpIngress.listen(host, port, names, dialer, { trustForwarded: options.trustForwarded, tls });
      stops.push(() => ingress.close());
      reloadCertificate = async () => {
        await tls.reload();
        ingress.useReloadedCertificate();
      };
      log.info({ https: ingress.address, domain: names.domain, cert: options.tlsCert }, `HTTPS ingress for *.${names.domain} on ${ingress.address}, terminating TLS here (the proxy sees the plaintext)`);
    }
    if (options.tlsPassthrough !== undefined && names !== undefined) {
      const { host, port } = parseAddress(options.tlsPassthrough, '0.0.0.0');
      const ingress = await TlsPassthroughIngress.listen(host, port, names, dialer);
      ingress.on('refused', (refusal) => log.debug({ event: 'tlsRefused', ...refusal }, `TLS ingress refused a connection: ${refusal.reason}`));
      stops.push(() => ingress.close());
      log.info({ tlsPassthrough: ingress.address, domain: names.domain }, `TLS passthrough ingress for *.${names.domain} on ${ingress.address}`);
    }
    if (ports !== undefined) {
      ports.attach((rid, origin) => dialer.open(rid, origin));
      stops.push(() => ports.close());
      log.info({ tcpPorts: `${formatAddress(ports.host, ports.from)}-${ports.to}`, maxPortsPerKey: ports.maxPerKey }, `public TCP ports ${ports.range} on ${ports.host}`);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop, reloadCertificate: () => reloadCertificate() };
}
