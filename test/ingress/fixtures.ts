import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readOrigin, type FlowOrigin } from '../../src/tunnel/protocol.js';
import type { Flow, Manager } from '../../src/index.js';

export interface Certificates {
  dir: string;
  /** The CA's certificate (PEM), for a client's `ca`. */
  ca: Buffer;
  /** Paths of the leaf's certificate and key, as `serve --tls-cert/--tls-key` take them. */
  cert: string;
  key: string;
}

/**
 * A CA made for one test and a certificate it signs for `names` (P-256: fast), with openssl, so
 * a TLS client can check the server's certificate as it would a real one, trusting only this CA.
 */
export function makeCertificates(names: string[]): Certificates {
  const dir = mkdtempSync(join(tmpdir(), 'ridproxy-tls-'));
  const at = (file: string): string => join(dir, file);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', at('ca.key'), '-out', at('ca.pem'), '-days', '2', '-subj', '/CN=ridproxy test CA');
  openssl('req', ...ec, '-keyout', at('leaf.key'), '-out', at('leaf.csr'), '-subj', `/CN=${names[0]}`);
  writeFileSync(at('leaf.ext'), `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}\nextendedKeyUsage=serverAuth\n`);
  openssl('x509', '-req', '-in', at('leaf.csr'), '-CA', at('ca.pem'), '-CAkey', at('ca.key'), '-CAcreateserial', '-out', at('leaf.pem'), '-days', '2', '-extfile', at('leaf.ext'));
  return { dir, ca: readFileSync(at('ca.pem')), cert: at('leaf.pem'), key: at('leaf.key') };
}

/** `count` consecutive TCP ports on 127.0.0.1 that nothing listens on now, for a public port range. */
export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 30_000 + Math.floor(Math.random() * 25_000);
    const probes: Server[] = [];
    let free = true;
    for (let port = base; port < base + count && free; port++) {
      const probe = createServer();
      free = await new Promise<boolean>((resolve) => {
        probe.once('error', () => resolve(false));
        probe.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(true));
      });
      if (free) probes.push(probe);
    }
    await Promise.all(probes.map((probe) => new Promise((resolve) => probe.close(resolve))));
    if (free) return base;
  }
  throw new Error(`found no ${count} free consecutive ports`);
}

/**
 * What `serve` does with each flow, in process: a flow from the ingress starts with its origin
 * message, then the serving side says its service is up (an empty message), then `handle` has the
 * flow. Runs until the manager stops.
 */
export function serveIngressFlows(manager: Manager, ingressRoutingId: () => string | undefined, handle: (flow: Flow, origin: FlowOrigin | undefined) => void): void {
  void (async () => {
    for await (const flow of manager) {
      flow.on('error', () => undefined);
      void (async () => {
        const origin = flow.conn.remoteRoutingId.toString() === ingressRoutingId() ? await readOrigin(flow) : undefined;
        await flow.writeMsg();
        handle(flow, origin);
      })().catch(() => flow.destroy());
    }
  })();
}
