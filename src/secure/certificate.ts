import { X509Certificate, randomBytes } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { Identity } from '../id/identity.js';

/*
 * The certificate is built and read with a few lines of DER instead of a general ASN.1 library:
 * its shape never changes (only the serial, the key and the signature do), and with a new
 * identity per process, generic ASN.1 encoding and parsing cost more CPU than the TLS handshake's
 * own signature operations.
 */

// DER tags used below.
const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OID = 0x06;
const UTF8_STRING = 0x0c;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
/** [0] EXPLICIT, constructed: the TBSCertificate's version field. */
const CONTEXT_0 = 0xa0;

/** id-Ed25519, 1.3.101.112 (RFC 8410), as DER OID content. */
const ED25519_OID = Buffer.from([0x2b, 0x65, 0x70]);
/** id-at-commonName, 2.5.4.3. */
const COMMON_NAME_OID = Buffer.from([0x55, 0x04, 0x03]);

/** One DER element: tag, definite length (short or long form), then the contents. */
function der(tag: number, ...contents: Buffer[]): Buffer {
  let length = 0;
  for (const c of contents) length += c.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.from([tag, length]);
  else if (length < 0x100) header = Buffer.from([tag, 0x81, length]);
  else header = Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
  return Buffer.concat([header, ...contents]);
}

/** AlgorithmIdentifier for Ed25519: the OID and no parameters (RFC 8410). */
const ALGORITHM = der(SEQUENCE, der(OID, ED25519_OID));
/** Version v3 (value 2). */
const VERSION_V3 = der(CONTEXT_0, der(INTEGER, Buffer.from([2])));
/**
 * Validity from 2000-01-01T00:00:00Z (UTCTime, as RFC 5280 requires before 2050) to
 * 9999-12-31T23:59:59Z (GeneralizedTime; RFC 5280 4.1.2.5: no well-defined expiration), so that
 * no clock skew or expiry can ever fail a handshake.
 */
const VALIDITY = der(SEQUENCE, der(UTC_TIME, Buffer.from('000101000000Z', 'latin1')), der(GENERALIZED_TIME, Buffer.from('99991231235959Z', 'latin1')));

/**
 * A self-signed X.509 certificate (DER) whose subject key is the identity's Ed25519 key. Only the
 * key matters to a peer: names, serial and validity are filler that X.509 requires.
 */
export function selfSignedCertificate(identity: Identity): Buffer {
  const serial = randomBytes(16);
  // A DER INTEGER with the top bit set would be negative, which RFC 5280 forbids for serials; one
  // with a leading zero byte before a byte below 0x80 is not minimal, which DER forbids (OpenSSL
  // refuses such a certificate: "illegal padding", once in 256 identities). 0x40 keeps it minimal.
  serial[0] = (serial[0] & 0x3f) | 0x40;
  const name = der(
    SEQUENCE,
    der(SET, der(SEQUENCE, der(OID, COMMON_NAME_OID), der(UTF8_STRING, Buffer.from(`ridproxy ${identity.routingId}`, 'utf8')))),
  );
  const subjectPublicKeyInfo = der(SEQUENCE, ALGORITHM, der(BIT_STRING, Buffer.from([0]), identity.publicKey));
  const tbs = der(SEQUENCE, VERSION_V3, der(INTEGER, serial), ALGORITHM, name, VALIDITY, name, subjectPublicKeyInfo);
  const signature = identity.sign(tbs);
  return der(SEQUENCE, tbs, ALGORITHM, der(BIT_STRING, Buffer.from([0]), signature));
}

/** PEM text of a DER certificate (RFC 7468: base64 in lines of 64 characters). */
function certificatePem(certificate: Buffer): string {
  const base64 = certificate.toString('base64');
  let body = '';
  for (let i = 0; i < base64.length; i += 64) body += `${base64.slice(i, i + 64)}\n`;
  return `-----BEGIN CERTIFICATE-----\n${body}-----END CERTIFICATE-----\n`;
}

const contexts = new WeakMap<Identity, SecureContext>();

/**
 * The TLS context presenting `identity`, built once per identity: parsing the key and certificate
 * costs more than the rest of a handshake's setup. TLS 1.3 only, and Ed25519 the only signature
 * scheme offered or accepted, so a peer cannot steer the handshake to anything weaker.
 */
export function secureContextFor(identity: Identity): SecureContext {
  let context = contexts.get(identity);
  if (context === undefined) {
    context = createSecureContext({
      key: identity.toPem(),
      cert: certificatePem(selfSignedCertificate(identity)),
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      sigalgs: 'ed25519',
    });
    contexts.set(identity, context);
  }
  return context;
}

/** One DER element of `buf` at `offset`: where its contents start and end, or undefined if it does not fit. */
function element(buf: Buffer, offset: number, tag: number): { start: number; end: number } | undefined {
  if (offset + 2 > buf.length || buf[offset] !== tag) return undefined;
  let length = buf[offset + 1];
  let start = offset + 2;
  if (length >= 0x80) {
    const bytes = length & 0x7f;
    if (bytes === 0 || bytes > 3 || start + bytes > buf.length) return undefined;
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + buf[start + i];
    start += bytes;
  }
  const end = start + length;
  return end <= buf.length ? { start, end } : undefined;
}

/**
 * The signed part and the signature of a certificate (DER): Certificate ::= SEQUENCE {
 * tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }. OpenSSL has already parsed the
 * certificate, so only these three elements are located, not re-validated.
 */
function signedParts(raw: Buffer): { tbs: Buffer; signature: Buffer } | undefined {
  const outer = element(raw, 0, SEQUENCE);
  if (outer === undefined || outer.end !== raw.length) return undefined;
  const tbs = element(raw, outer.start, SEQUENCE);
  if (tbs === undefined) return undefined;
  const algorithm = element(raw, tbs.end, SEQUENCE);
  if (algorithm === undefined) return undefined;
  const signature = element(raw, algorithm.end, BIT_STRING);
  // A BIT STRING's first content byte counts the unused bits of its last byte: none, for a signature.
  if (signature === undefined || signature.end !== outer.end || signature.end - signature.start < 1 || raw[signature.start] !== 0) return undefined;
  return { tbs: raw.subarray(outer.start, tbs.end), signature: raw.subarray(signature.start + 1, signature.end) };
}

/**
 * The raw Ed25519 key a peer's certificate carries, or why it is not a ridproxy identity. TLS has
 * already checked the peer's CertificateVerify against this key; the self-signature is checked
 * again with Identity.verify because OpenSSL accepts small-order keys, for which such signatures
 * can be forged, while Identity.verify refuses them.
 */
export function certificateKey(certificate: X509Certificate): { key: Buffer } | { problem: string } {
  if (certificate.publicKey.asymmetricKeyType !== 'ed25519') {
    return { problem: `its certificate holds a ${certificate.publicKey.asymmetricKeyType ?? 'unknown'} key, not an Ed25519 identity` };
  }
  const x = certificate.publicKey.export({ format: 'jwk' }).x;
  if (x === undefined) return { problem: 'its certificate key cannot be read' };
  const key = Buffer.from(x, 'base64url');
  const parts = signedParts(certificate.raw);
  if (parts === undefined) return { problem: 'its certificate cannot be parsed' };
  if (!Identity.verify(key, parts.tbs, parts.signature)) {
    return { problem: 'its certificate is not self-signed by a valid Ed25519 identity key' };
  }
  return { key };
}
