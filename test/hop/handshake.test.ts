import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { AuthenticationError } from '../../src/errors.js';
import {
  TokenPurpose,
  deriveTokenKey,
  ephemeralFromPrivate,
  generateEphemeral,
  proofMessage,
  signProof,
  tokenMac,
  tokenMacMatches,
  transcriptHash,
  verifyProof,
} from '../../src/hop/handshake.js';
import { Identity } from '../../src/id/identity.js';
import { decodeHello, encodeHello } from '../../src/wire/index.js';

// Known-answer vectors for the hop handshake's key schedule (docs/protocol.md section 6.1). Every
// value is computed from fixed inputs and compared with frozen hex, so a changed label, field
// order or primitive fails here before it breaks interoperability with another implementation.

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** An Identity from a raw 32-byte Ed25519 seed (RFC 8032), through its PKCS8 DER encoding. */
function identityFromSeed(seed: string): Identity {
  const der = Buffer.concat([hex('302e020100300506032b657004220420'), hex(seed)]);
  return Identity.fromPrivateKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
}

// Inputs.
const INITIATOR_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'; // RFC 8032 7.1 test 1
const RESPONDER_SEED = '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb'; // RFC 8032 7.1 test 2
const INITIATOR_X25519 = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'; // RFC 7748 6.1 Alice
const RESPONDER_X25519 = '5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'; // RFC 7748 6.1 Bob
const INITIATOR_NONCE = Buffer.alloc(32, 0x01);
const RESPONDER_NONCE = Buffer.alloc(32, 0x02);
const TOKEN = 's3cret';

// Expected outputs.
const INITIATOR_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const INITIATOR_RID = '21fe31dfa154a261626bf854046fd227';
const RESPONDER_PUBLIC = '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c';
const RESPONDER_RID = '39f713d0a644253f04529421b9f51b9b';
const INITIATOR_EPHEMERAL = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';
const RESPONDER_EPHEMERAL = 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f';
const INITIATOR_HELLO = INITIATOR_PUBLIC + INITIATOR_EPHEMERAL + '01'.repeat(32);
const RESPONDER_HELLO = RESPONDER_PUBLIC + RESPONDER_EPHEMERAL + '02'.repeat(32);
const TRANSCRIPT = '2f1cc04a8d358d67748a0323d96cee94740f7698098a1f2df80c65c3afe15889';
const INITIATOR_PROOF =
  '35621de52cc5e7170aaf9e7342c2fcfa09abb1cbf348877f32e6d8e356749cca01ead481f5a5975aee1ec82db3cb7023a67f9be8930a432b126c423ba45d9303';
const RESPONDER_PROOF =
  '376f61d15cbc7dde31423934c329b540c0ebcc252c5ab617bae4c14266c098c46bdd67e9aef7042f53e333ca447e7855620afd32928608a4e3eb6f506119f702';
const SHARED_SECRET = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'; // RFC 7748 6.1
const TOKEN_KEY = 'e456dea256b2bbf396f05dc6b57713958047e6e63acc680cecf1b456ef2fe4d0';
const MAC_REGISTER = 'd885426633011633ece5d85066424e5945cae5caad40da5f1621e87fc651bdd0';
const MAC_DIAL_VC1 = '280bad13dd5b01ea84acf726ccd6add4fbb46bb274dba91c9a309c22d7d2cb0e';
const MAC_STATUS = 'c9612ced7d3578ed872bfcc40456c40e4ec3e7c2f0e392fd48164af6b35858e4';

const initiator = identityFromSeed(INITIATOR_SEED);
const responder = identityFromSeed(RESPONDER_SEED);
const initiatorEphemeral = ephemeralFromPrivate(hex(INITIATOR_X25519));
const responderEphemeral = ephemeralFromPrivate(hex(RESPONDER_X25519));
const initiatorHello = encodeHello(initiator.publicKey, initiatorEphemeral.publicKey, INITIATOR_NONCE);
const responderHello = encodeHello(responder.publicKey, responderEphemeral.publicKey, RESPONDER_NONCE);
const transcript = transcriptHash(initiatorHello, responderHello);

describe('hop handshake known-answer vectors', () => {
  it('derives the RFC 8032 static keys and their routing ids', () => {
    expect(initiator.publicKey.toString('hex')).toBe(INITIATOR_PUBLIC);
    expect(initiator.routingId.toString()).toBe(INITIATOR_RID);
    expect(responder.publicKey.toString('hex')).toBe(RESPONDER_PUBLIC);
    expect(responder.routingId.toString()).toBe(RESPONDER_RID);
  });

  it('derives the RFC 7748 ephemeral public keys', () => {
    expect(initiatorEphemeral.publicKey.toString('hex')).toBe(INITIATOR_EPHEMERAL);
    expect(responderEphemeral.publicKey.toString('hex')).toBe(RESPONDER_EPHEMERAL);
  });

  it('encodes both Hello payloads as static key | ephemeral key | nonce', () => {
    expect(initiatorHello.toString('hex')).toBe(INITIATOR_HELLO);
    expect(responderHello.toString('hex')).toBe(RESPONDER_HELLO);
    const decoded = decodeHello(responderHello);
    expect(decoded.publicKey.toString('hex')).toBe(RESPONDER_PUBLIC);
    expect(decoded.ephemeralKey.toString('hex')).toBe(RESPONDER_EPHEMERAL);
    expect(decoded.nonce.equals(RESPONDER_NONCE)).toBe(true);
  });

  it('hashes the transcript over the label and both Hellos, the initiator first', () => {
    expect(transcript.toString('hex')).toBe(TRANSCRIPT);
    expect(transcriptHash(responderHello, initiatorHello).toString('hex')).not.toBe(TRANSCRIPT);
  });

  it('signs the proofs under each role label (Ed25519 is deterministic)', () => {
    expect(proofMessage('initiator', transcript).toString('latin1', 0, 33)).toBe('ridproxy/2 hop proof by initiator');
    expect(proofMessage('responder', transcript).toString('latin1', 0, 33)).toBe('ridproxy/2 hop proof by responder');
    expect(signProof(initiator, 'initiator', transcript).toString('hex')).toBe(INITIATOR_PROOF);
    expect(signProof(responder, 'responder', transcript).toString('hex')).toBe(RESPONDER_PROOF);
  });

  it('verifies each proof for its own role and transcript only', () => {
    const iHello = decodeHello(initiatorHello);
    const rHello = decodeHello(responderHello);
    expect(verifyProof(iHello, 'initiator', transcript, hex(INITIATOR_PROOF))).toBe(true);
    expect(verifyProof(rHello, 'responder', transcript, hex(RESPONDER_PROOF))).toBe(true);
    // Reflection: a proof is useless under the other role's label.
    expect(verifyProof(iHello, 'responder', transcript, hex(INITIATOR_PROOF))).toBe(false);
    expect(verifyProof(rHello, 'initiator', transcript, hex(RESPONDER_PROOF))).toBe(false);
    // Wrong signer.
    expect(verifyProof(rHello, 'initiator', transcript, hex(INITIATOR_PROOF))).toBe(false);
  });

  it('binds a proof to the verifier: a proof made for P1 does not verify for P2', () => {
    const otherProxy = identityFromSeed('03'.repeat(32));
    const otherResponderHello = encodeHello(otherProxy.publicKey, responderEphemeral.publicKey, RESPONDER_NONCE);
    const relayed = transcriptHash(initiatorHello, otherResponderHello);
    expect(verifyProof(decodeHello(initiatorHello), 'initiator', relayed, hex(INITIATOR_PROOF))).toBe(false);
    // And the other way: the responder's proof for this initiator does not verify for another one.
    const otherClient = identityFromSeed('04'.repeat(32));
    const otherInitiatorHello = encodeHello(otherClient.publicKey, initiatorEphemeral.publicKey, INITIATOR_NONCE);
    const forOther = transcriptHash(otherInitiatorHello, responderHello);
    expect(verifyProof(decodeHello(responderHello), 'responder', forOther, hex(RESPONDER_PROOF))).toBe(false);
  });

  it('agrees on the RFC 7748 shared secret', () => {
    const fromInitiator = diffieHellman({ privateKey: initiatorEphemeral.privateKey, publicKey: createPublicKey(responderEphemeral.privateKey) });
    const fromResponder = diffieHellman({ privateKey: responderEphemeral.privateKey, publicKey: createPublicKey(initiatorEphemeral.privateKey) });
    expect(fromInitiator.toString('hex')).toBe(SHARED_SECRET);
    expect(fromResponder.toString('hex')).toBe(SHARED_SECRET);
  });

  it('derives the same token key on both sides', () => {
    expect(deriveTokenKey(initiatorEphemeral, responderEphemeral.publicKey, transcript).toString('hex')).toBe(TOKEN_KEY);
    expect(deriveTokenKey(responderEphemeral, initiatorEphemeral.publicKey, transcript).toString('hex')).toBe(TOKEN_KEY);
  });

  it('computes the token MACs for each purpose', () => {
    const key = hex(TOKEN_KEY);
    expect(tokenMac(key, TokenPurpose.Register, 0, TOKEN).toString('hex')).toBe(MAC_REGISTER);
    expect(tokenMac(key, TokenPurpose.Dial, 1, TOKEN).toString('hex')).toBe(MAC_DIAL_VC1);
    expect(tokenMac(key, TokenPurpose.Status, 0, TOKEN).toString('hex')).toBe(MAC_STATUS);
    expect(tokenMac(key, TokenPurpose.Dial, 3, TOKEN).toString('hex')).not.toBe(MAC_DIAL_VC1);
  });
});

describe('hop handshake checks', () => {
  it('refuses a small-order peer ephemeral key', () => {
    const lowOrder = [
      Buffer.alloc(32), // the all-zero point
      hex('0100000000000000000000000000000000000000000000000000000000000000'),
      hex('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800'), // order 8
    ];
    for (const point of lowOrder) {
      let caught: unknown;
      try {
        deriveTokenKey(initiatorEphemeral, point, transcript);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(AuthenticationError);
      expect((caught as AuthenticationError).code).toBe('ERR_AUTHENTICATION');
    }
  });

  it('matches a MAC only for its own token, purpose, VC id and length', () => {
    const key = hex(TOKEN_KEY);
    expect(tokenMacMatches(key, TokenPurpose.Register, 0, TOKEN, hex(MAC_REGISTER))).toBe(true);
    expect(tokenMacMatches(key, TokenPurpose.Dial, 1, TOKEN, hex(MAC_DIAL_VC1))).toBe(true);
    expect(tokenMacMatches(key, TokenPurpose.Status, 0, TOKEN, hex(MAC_STATUS))).toBe(true);
    // Another purpose.
    expect(tokenMacMatches(key, TokenPurpose.Status, 0, TOKEN, hex(MAC_REGISTER))).toBe(false);
    expect(tokenMacMatches(key, TokenPurpose.Register, 0, TOKEN, hex(MAC_STATUS))).toBe(false);
    // Another VC id, another token.
    expect(tokenMacMatches(key, TokenPurpose.Dial, 3, TOKEN, hex(MAC_DIAL_VC1))).toBe(false);
    expect(tokenMacMatches(key, TokenPurpose.Register, 0, 's3creT', hex(MAC_REGISTER))).toBe(false);
    // Another length: truncated, extended, empty.
    expect(tokenMacMatches(key, TokenPurpose.Register, 0, TOKEN, hex(MAC_REGISTER).subarray(0, 31))).toBe(false);
    expect(tokenMacMatches(key, TokenPurpose.Register, 0, TOKEN, Buffer.concat([hex(MAC_REGISTER), Buffer.alloc(1)]))).toBe(false);
    expect(tokenMacMatches(key, TokenPurpose.Register, 0, TOKEN, Buffer.alloc(0))).toBe(false);
    // Another connection's key.
    expect(tokenMacMatches(Buffer.alloc(32, 0x07), TokenPurpose.Register, 0, TOKEN, hex(MAC_REGISTER))).toBe(false);
  });
});

describe('ephemeral keys', () => {
  it('takes the public key from the key generation, never by exporting a generated key (Node 20 deadlock)', () => {
    // Node 20 exports an X25519 key as JWK holding the key's mutex while it allocates; a GC
    // there that frees the finished generateKeyPairSync job, whose destructor takes the same
    // mutex, hangs the process for good (seen in bench/scenarios/reconnect.ts, about once per
    // 100,000 proxy handshakes). A spy catches any export, of any format, of the new keys.
    const sample = generateKeyPairSync('x25519');
    const exports = [Object.getPrototypeOf(sample.publicKey) as object, Object.getPrototypeOf(sample.privateKey) as object].map((proto) =>
      vi.spyOn(proto as { export: (...args: unknown[]) => unknown }, 'export'),
    );
    try {
      for (let i = 0; i < 10; i++) generateEphemeral();
      for (const spy of exports) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of exports) spy.mockRestore();
    }
  });

  it("sends the raw 32-byte public key of the pair's private key", () => {
    const ephemeral = generateEphemeral();
    expect(ephemeral.publicKey.length).toBe(32);
    const spki = createPublicKey(ephemeral.privateKey).export({ format: 'der', type: 'spki' });
    expect(ephemeral.publicKey.equals(spki.subarray(spki.length - 32))).toBe(true);
    // And the pair agrees with a peer's, both ways, as a handshake needs.
    const peer = generateEphemeral();
    const raw = (key: Buffer) => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: key.toString('base64url') }, format: 'jwk' });
    expect(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: raw(peer.publicKey) })).toEqual(
      diffieHellman({ privateKey: peer.privateKey, publicKey: raw(ephemeral.publicKey) }),
    );
  });
});
