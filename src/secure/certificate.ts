import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  Certificate,
  Name,
  RelativeDistinguishedName,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from '@peculiar/asn1-x509';
import { X509Certificate, randomBytes } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { Identity, isSmallOrderKey } from '../id/identity.js';

const ED25519_OID = '1.3.101.112';
const COMMON_NAME_OID = '2.5.4.3';
/** RFC 5280 4.1.2.5: the value for a certificate with no well-defined expiration. */
const NO_EXPIRY = new Date('9999-12-31T23:59:59Z');
const LONG_AGO = new Date('2000-01-01T00:00:00Z');

function arrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
}

/**
 * A self-signed X.509 certificate (DER) whose subject key is the identity's Ed25519 key. Only the
 * key matters to a peer: names, serial and validity are filler that X.509 requires, chosen so that
 * no clock skew or expiry can ever fail a handshake.
 */
export function selfSignedCertificate(identity: Identity): Buffer {
  const algorithm = new AlgorithmIdentifier({ algorithm: ED25519_OID });
  const name = new Name([
    new RelativeDistinguishedName([
      new AttributeTypeAndValue({ type: COMMON_NAME_OID, value: new AttributeValue({ utf8String: `ridproxy ${identity.routingId}` }) }),
    ]),
  ]);
  const serial = randomBytes(16);
  // Positive (top bit clear, as RFC 5280 requires) and minimal (no leading zero byte, as DER
  // requires: OpenSSL refuses "illegal padding", which `&= 0x7f` alone produced once in 256).
  serial[0] = (serial[0] & 0x3f) | 0x40;
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: arrayBuffer(serial),
    signature: algorithm,
    issuer: name,
    subject: name,
    validity: new Validity({ notBefore: LONG_AGO, notAfter: NO_EXPIRY }),
    subjectPublicKeyInfo: new SubjectPublicKeyInfo({ algorithm, subjectPublicKey: arrayBuffer(identity.publicKey) }),
  });
  const signature = identity.sign(Buffer.from(AsnConvert.serialize(tbs)));
  const certificate = new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: arrayBuffer(signature) });
  return Buffer.from(AsnConvert.serialize(certificate));
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
      cert: new X509Certificate(selfSignedCertificate(identity)).toString(),
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      sigalgs: 'ed25519',
      // The records use the negotiated suite's AEAD; AES-128-GCM opens them fastest in node:crypto (docs/security.md).
      ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
    });
    contexts.set(identity, context);
  }
  return context;
}

/**
 * The raw Ed25519 key a peer's certificate carries, or why it is not a ridproxy identity. TLS has
 * already checked the peer's CertificateVerify against this key, which proves the peer holds it,
 * except for the small-order keys whose signatures anyone can forge and OpenSSL still accepts:
 * those are refused here.
 */
export function certificateKey(certificate: X509Certificate): { key: Buffer } | { problem: string } {
  if (certificate.publicKey.asymmetricKeyType !== 'ed25519') {
    return { problem: `its certificate holds a ${certificate.publicKey.asymmetricKeyType ?? 'unknown'} key, not an Ed25519 identity` };
  }
  const x = certificate.publicKey.export({ format: 'jwk' }).x;
  if (x === undefined) return { problem: 'its certificate key cannot be read' };
  const key = Buffer.from(x, 'base64url');
  // The certificate's own signature is not checked: it proves nothing CertificateVerify has not.
  if (isSmallOrderKey(key)) return { problem: 'its certificate holds a small-order Ed25519 key, under which signatures prove nothing' };
  return { key };
}
