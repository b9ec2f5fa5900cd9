/**
 * The cost of sealing and opening one record, by AEAD and implementation, for the choice of what
 * seals the secure channel's records (src/secure/records.ts):
 *
 *   npm run build && node dist/bench/aead.js
 *
 * - `node:crypto aes-128-gcm` and `node:crypto chacha20-poly1305`: what records.ts does, a
 *   Cipheriv per record (node:crypto cannot change the nonce of one), setAAD, update, final,
 *   getAuthTag; every update returns a new buffer.
 * - `sodium-native chacha20-poly1305`: libsodium's IETF ChaCha20-Poly1305 (what TLS 1.3's
 *   TLS_CHACHA20_POLY1305_SHA256 uses), detached, into a buffer allocated once. Measured only when
 *   the package is present (`npm install --no-save sodium-native`): ridproxy does not depend on
 *   it. libsodium has no AES-128-GCM, the suite this implementation negotiates first.
 *
 * Each figure is the median of BENCH_RUNS (default 5) runs of BENCH_MIB (default 256) MiB per
 * record size, sealing then opening each record, on one thread; GC time is part of it.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';

const MIB = 2 ** 20;
const TOTAL = Number(process.env.BENCH_MIB ?? 256) * MIB;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const SIZES = [64, 1024, 16 * 1024, 64 * 1024, 256 * 1024];
const TAG = 16;

interface Sodium {
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(c: Buffer, mac: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(m: Buffer, nsec: null, c: Buffer, mac: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): void;
}

function loadSodium(): Sodium | undefined {
  try {
    return createRequire(import.meta.url)('sodium-native') as Sodium;
  } catch {
    return undefined;
  }
}

/** Seals and opens one record of `plaintext`; returns the plaintext opened, so nothing is optimised away. */
type RoundTrip = (plaintext: Buffer, nonce: Buffer) => number;

function nodeCrypto(name: 'aes-128-gcm' | 'chacha20-poly1305'): RoundTrip {
  const key = randomBytes(name === 'aes-128-gcm' ? 16 : 32);
  const header = Buffer.alloc(4, 1);
  return (plaintext, nonce) => {
    const cipher = name === 'aes-128-gcm' ? createCipheriv(name, key, nonce, { authTagLength: TAG }) : createCipheriv(name, key, nonce, { authTagLength: TAG });
    cipher.setAAD(header, { plaintextLength: plaintext.length });
    const sealed = cipher.update(plaintext);
    cipher.final();
    const tag = cipher.getAuthTag();
    const decipher = name === 'aes-128-gcm' ? createDecipheriv(name, key, nonce, { authTagLength: TAG }) : createDecipheriv(name, key, nonce, { authTagLength: TAG });
    decipher.setAAD(header, { plaintextLength: sealed.length });
    decipher.setAuthTag(tag);
    const opened = decipher.update(sealed);
    decipher.final();
    return opened.length;
  };
}

function sodiumChaCha(sodium: Sodium, maxSize: number): RoundTrip {
  const key = randomBytes(32);
  const header = Buffer.alloc(4, 1);
  const sealed = Buffer.alloc(maxSize);
  const opened = Buffer.alloc(maxSize);
  const tag = Buffer.alloc(TAG);
  return (plaintext, nonce) => {
    const c = sealed.subarray(0, plaintext.length);
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, tag, plaintext, header, null, nonce, key);
    const m = opened.subarray(0, plaintext.length);
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(m, null, c, tag, header, nonce, key);
    return m.length;
  };
}

function measure(roundTrip: RoundTrip, size: number): { usPerRecord: number; gbps: number } {
  const plaintext = randomBytes(size);
  const nonce = randomBytes(12);
  const records = Math.max(1000, Math.floor(TOTAL / size));
  const results: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    let check = 0;
    const start = process.hrtime.bigint();
    for (let i = 0; i < records; i++) {
      nonce.writeUInt32BE(i, 8);
      check += roundTrip(plaintext, nonce);
    }
    const ns = Number(process.hrtime.bigint() - start);
    if (check !== records * size) throw new Error('a record did not open to its plaintext');
    results.push(ns / records);
  }
  results.sort((a, b) => a - b);
  const ns = results[Math.floor(results.length / 2)];
  return { usPerRecord: ns / 1000, gbps: (size * 8) / ns };
}

function main(): void {
  const sodium = loadSodium();
  const candidates: Array<[string, RoundTrip]> = [
    ['node:crypto aes-128-gcm', nodeCrypto('aes-128-gcm')],
    ['node:crypto chacha20-poly1305', nodeCrypto('chacha20-poly1305')],
  ];
  if (sodium) candidates.push(['sodium-native chacha20-poly1305', sodiumChaCha(sodium, Math.max(...SIZES))]);
  else process.stdout.write('sodium-native is not installed (npm install --no-save sodium-native): measuring node:crypto only\n');
  process.stdout.write(`seal + open of one record, median of ${RUNS} runs of ${TOTAL / MIB} MiB per size (Node ${process.version}, OpenSSL ${process.versions.openssl})\n`);
  process.stdout.write(`${'implementation'.padEnd(34)}${SIZES.map((s) => `${s >= 1024 ? `${s / 1024} KiB` : `${s} B`}`.padStart(20)).join('')}\n`);
  for (const [name, roundTrip] of candidates) {
    const cells = SIZES.map((size) => {
      const { usPerRecord, gbps } = measure(roundTrip, size);
      return `${usPerRecord.toFixed(2)} µs ${gbps.toFixed(2)} Gb/s`.padStart(20);
    });
    process.stdout.write(`${name.padEnd(34)}${cells.join('')}\n`);
  }
  process.stdout.write('(µs per record sealed and opened; Gb/s = plaintext bits per ns of both)\n');
}

main();
