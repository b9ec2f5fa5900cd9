import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { promisify } from 'node:util';
import { credentials, ServerCredentials, status } from '@grpc/grpc-js';
import { describe, expect, test } from 'vitest';
import { Identity } from '../../src/index.js';
import { selfSignedCertificate } from '../../src/secure/certificate.js';
import { useNetwork } from '../fixtures.js';
import { unary } from './service.js';
import { clientOf, forwardTunnel } from './tunnels.js';

const net = useNetwork({ checkLeaks: true });
const run = promisify(execFile);
const NAME = 'ridproxy.test';

interface KeyPair {
  key: Buffer;
  cert: Buffer;
}

const openssl = await run('openssl', ['version']).then(
  () => true,
  () => false,
);

/** A throwaway self-signed P-256 certificate for NAME, made by the openssl command. */
async function opensslPair(): Promise<KeyPair> {
  const dir = await mkdtemp(join(tmpdir(), 'ridproxy-grpc-tls-'));
  try {
    const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
    const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1'];
    await run('openssl', [...args, '-keyout', key, '-out', cert, '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME}`]);
    return { key: await readFile(key), cert: await readFile(cert) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Without openssl: an Ed25519 certificate from ridproxy's own code, for a new identity; it names no host. */
function nodePair(): KeyPair {
  const identity = Identity.generate();
  return { key: Buffer.from(identity.toPem()), cert: Buffer.from(new X509Certificate(selfSignedCertificate(identity)).toString()) };
}

const sources = [
  { source: 'openssl', make: opensslPair, available: openssl },
  { source: 'node:crypto', make: async () => nodePair(), available: true },
];

describe.each(sources)('TLS inside flows, certificates from $source', ({ make, available, source }) => {
  test.skipIf(!available)('a grpc-js client with ssl credentials calls through the bridge a server given ServerCredentials.createSsl, with client certificates', async () => {
    const [server, client] = await Promise.all([make(), make()]);
    const serverCredentials = ServerCredentials.createSsl(client.cert, [{ private_key: server.key, cert_chain: server.cert }], true);
    // ridproxy's certificates name no host: checked against the pinned certificate instead.
    const verify = source === 'openssl' ? {} : { checkServerIdentity: (_host: string, cert: { raw: Buffer }) => (cert.raw.equals(new X509Certificate(server.cert).raw) ? undefined : new Error('not the server certificate')) };
    const clientCredentials = credentials.createSsl(server.cert, client.key, client.cert, verify);
    const tunnel = await forwardTunnel(net, { serve: { credentials: serverCredentials }, credentials: clientCredentials, channelOptions: { 'grpc.ssl_target_name_override': NAME, 'grpc.default_authority': NAME } });
    const reply = await unary(tunnel.client, 'who', {});
    expect(reply).toMatchObject({ security: 'ssl', first: `${tunnel.clientManager.routingId}:${tunnel.clientManager.identity.publicKey.toString('hex')}` });

    // The server really runs TLS inside the flow: a plaintext client gets nowhere.
    const plain = clientOf(net, tunnel.bridge.target);
    await expect(unary(plain, 'echo', { text: 'x' }, { deadline: Date.now() + 3_000 })).rejects.toMatchObject({ code: status.UNAVAILABLE });
  });
});
