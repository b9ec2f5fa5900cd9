import { join, dirname } from 'node:path';
import { formatAddress, parseAddress } from '../id/endpoint.js';
import { Identity } from '../id/identity.js';
import { IngressDialer } from '../ingress/dialer.js';
import { HttpIngress } from '../ingress/http.js';
import { NameDirectory } from '../ingress/names.js';
import type { Proxy } from '../proxy/proxy.js';
import type { Logger } from './logger.js';

export interface WebIngressOptions {
  http?: string;
  domain?: string;
  namesFile?: string;
  trustForwarded?: boolean;
}

/** Where `start` keeps the ingress's name reservations by default: next to the proxy's identity. */
export function defaultNamesPath(identityPath: string): string {
  return join(dirname(identityPath), 'names.json');
}

/**
 * The name directory for `start --domain`, made before the proxy listens (it decides on
 * registrations), with the identity the ingress dials servers with: one per run, since what
 * servers trust is what the proxy they pinned tells them.
 */
export function webIngress(options: WebIngressOptions, identityPath: string): { names: NameDirectory; identity: Identity } | undefined {
  if (options.domain === undefined) return undefined;
  const identity = Identity.generate();
  const http = options.http === undefined ? undefined : parseAddress(options.http, '0.0.0.0');
  const domain = options.domain;
  const names = new NameDirectory(
    domain,
    options.namesFile ?? defaultNamesPath(identityPath),
    (hostname) => (http === undefined ? [] : [`http://${hostname}${http.port === 80 ? '' : `:${http.port}`}/`]),
    identity.routingId,
  );
  return { names, identity };
}

/** Starts the HTTP ingress of `start --http`; the caller has checked that --domain is given with it. */
export async function startHttpIngress(
  proxy: Proxy,
  web: { names: NameDirectory; identity: Identity },
  options: WebIngressOptions,
  dialToken: () => string | undefined,
  log: Logger,
): Promise<() => Promise<void>> {
  const { names } = web;
  const { host, port } = parseAddress(options.http!, '0.0.0.0');
  const dialer = new IngressDialer(proxy, web.identity, dialToken);
  let ingress: HttpIngress;
  try {
    ingress = await HttpIngress.listen(host, port, names, dialer, { trustForwarded: options.trustForwarded });
  } catch (err) {
    await dialer.close();
    throw err;
  }
  log.info({ http: formatAddress(ingress.host, ingress.port), domain: names.domain }, `HTTP ingress for *.${names.domain} on ${ingress.address}`);
  return async () => {
    await ingress.close();
    await dialer.close();
  };
}
