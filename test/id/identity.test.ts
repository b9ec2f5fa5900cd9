import { generateKeyPairSync } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Identity, loadIdentity, publicKeyFromRaw, saveIdentity } from '../../src/id/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ridproxy-identity-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectRejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(Error);
  expect((err as { code?: string }).code).toBe(code);
  expect((err as Error).message).toMatch(message);
}

describe('Identity', () => {
  it('signs and verifies', () => {
    const id = Identity.generate();
    expect(id.publicKey.length).toBe(32);
    const data = Buffer.from('hello');
    const sig = id.sign(data);
    expect(sig.length).toBe(64);
    expect(Identity.verify(id.publicKey, data, sig)).toBe(true);
    expect(Identity.verify(id.publicKey, Buffer.from('hellp'), sig)).toBe(false);
    expect(Identity.verify(Identity.generate().publicKey, data, sig)).toBe(false);
  });

  it('verify returns false on garbage rather than throwing', () => {
    const id = Identity.generate();
    const data = Buffer.from('x');
    const sig = id.sign(data);
    expect(Identity.verify(Buffer.alloc(31), data, sig)).toBe(false);
    expect(Identity.verify(id.publicKey, data, sig.subarray(0, 63))).toBe(false);
    expect(Identity.verify(Buffer.alloc(32, 0xff), data, Buffer.alloc(64, 0xff))).toBe(false);
    expect(Identity.verify(Buffer.alloc(32), data, Buffer.alloc(64))).toBe(false);
    const garbage = undefined as unknown as Buffer;
    expect(Identity.verify(garbage, garbage, garbage)).toBe(false);
    expect(Identity.verify(id.publicKey, garbage, sig)).toBe(false);
  });

  it('verify rejects small-order public keys, for which signatures can be forged', () => {
    // OpenSSL accepts (key 0, signature 0) for about one message in four; none of them may pass.
    const zeroSig = Buffer.concat([Buffer.alloc(32), Buffer.alloc(32)]);
    for (let i = 0; i < 64; i++) {
      const data = Buffer.from([i]);
      expect(Identity.verify(Buffer.alloc(32), data, zeroSig)).toBe(false);
      const signBitSet = Buffer.alloc(32);
      signBitSet[31] = 0x80;
      expect(Identity.verify(signBitSet, data, zeroSig)).toBe(false);
    }
  });

  it('publicKeyFromRaw gives a KeyObject equal to the generated public key', () => {
    const id = Identity.generate();
    const k = publicKeyFromRaw(id.publicKey);
    expect(k.asymmetricKeyType).toBe('ed25519');
    expect((k.export({ format: 'der', type: 'spki' }) as Buffer).subarray(12).equals(id.publicKey)).toBe(true);
  });

  it('fromPrivateKey rejects other key types', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => Identity.fromPrivateKey(rsa.privateKey)).toThrow(/not an Ed25519 private key \(found rsa\)/);
    expect(() => Identity.fromPrivateKey(generateKeyPairSync('ed25519').publicKey)).toThrow(/expected a private key, got a public key/);
  });

  it('toJSON has the documented shape', () => {
    const id = Identity.generate();
    const j = id.toJSON();
    expect(j.type).toBe('ridproxy-identity');
    expect(j.version).toBe(1);
    expect(j.publicKey).toBe(id.publicKey.toString('hex'));
    expect(j.routingId).toBe(id.routingId.toString());
    expect(Buffer.from(j.privateKey, 'base64').length).toBe(48);
  });
});

describe('saveIdentity / loadIdentity', () => {
  for (const ext of ['pem', 'json']) {
    it(`round-trips the ${ext} form with mode 0600 in a new 0700 directory`, async () => {
      const id = Identity.generate();
      const file = join(dir, `new-${ext}`, 'sub', `id.${ext}`);
      await saveIdentity(id, file);
      const text = await readFile(file, 'utf8');
      expect(text.startsWith(ext === 'pem' ? '-----BEGIN PRIVATE KEY-----' : '{')).toBe(true);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, `new-${ext}`))).mode & 0o777).toBe(0o700);
      const loaded = await loadIdentity(file);
      expect(loaded.routingId.equals(id.routingId)).toBe(true);
      expect(loaded.publicKey.equals(id.publicKey)).toBe(true);
      expect(Identity.verify(id.publicKey, Buffer.from('m'), loaded.sign(Buffer.from('m')))).toBe(true);
    });
  }

  it('refuses to overwrite without force, replaces with force and tightens the mode', async () => {
    const file = join(dir, 'exists.pem');
    const first = Identity.generate();
    await saveIdentity(first, file);
    await expectRejects(saveIdentity(Identity.generate(), file), 'ERR_IDENTITY_EXISTS', new RegExp(`identity file ${file} already exists; use --force to replace it`));
    expect((await loadIdentity(file)).routingId.equals(first.routingId)).toBe(true);

    await writeFile(file, first.toPem(), { mode: 0o644 });
    const { chmod } = await import('node:fs/promises');
    await chmod(file, 0o644);
    const second = Identity.generate();
    await saveIdentity(second, file, { force: true });
    expect((await loadIdentity(file)).routingId.equals(second.routingId)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('names the file when it is missing or a directory', async () => {
    const missing = join(dir, 'nope.pem');
    await expectRejects(loadIdentity(missing), 'ERR_INVALID_IDENTITY', new RegExp(`^identity file ${missing}: no such file$`));
    await expectRejects(loadIdentity(dir), 'ERR_INVALID_IDENTITY', /is a directory/);
  });

  const rsaPem = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const good = Identity.generate();
  const goodJson = good.toJSON();
  const cases: Array<[string, string, RegExp]> = [
    ['garbage.pem', 'hello world\n', /not a ridproxy identity \(expected a PEM private key or the JSON form\)/],
    ['empty.pem', '', /not a ridproxy identity/],
    ['rsa.pem', rsaPem, /not an Ed25519 private key \(found rsa\)/],
    ['public.pem', generateKeyPairSync('ed25519').publicKey.export({ format: 'pem', type: 'spki' }).toString(), /contains a public key, not a private key/],
    ['broken.pem', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', /not a valid PEM private key/],
    ['truncated.json', JSON.stringify(goodJson).slice(0, 40), /invalid JSON/],
    ['array.json', '[1]', /not a ridproxy identity/],
    ['type.json', JSON.stringify({ ...goodJson, type: 'other' }), /type is "other", expected "ridproxy-identity"/],
    ['version.json', JSON.stringify({ ...goodJson, version: 2 }), /unsupported identity version 2/],
    ['nokey.json', JSON.stringify({ ...goodJson, privateKey: '***' }), /privateKey must be the base64 PKCS8 DER private key/],
    ['badder.json', JSON.stringify({ ...goodJson, privateKey: 'AAAA' }), /privateKey is not a valid PKCS8 private key/],
    ['rid.json', JSON.stringify({ ...goodJson, routingId: '00'.repeat(16) }), /routingId "0{32}" does not match the private key/],
    ['pub.json', JSON.stringify({ ...goodJson, publicKey: Identity.generate().publicKey.toString('hex') }), /publicKey "[0-9a-f]{64}" does not match the private key/],
    [
      'rsa.json',
      JSON.stringify({ ...goodJson, privateKey: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64') }),
      /not an Ed25519 private key \(found rsa\)/,
    ],
  ];
  for (const [name, content, message] of cases) {
    it(`rejects ${name} with ERR_INVALID_IDENTITY naming the file`, async () => {
      const file = join(dir, name);
      await writeFile(file, content);
      await expectRejects(loadIdentity(file), 'ERR_INVALID_IDENTITY', message);
      await expectRejects(loadIdentity(file), 'ERR_INVALID_IDENTITY', new RegExp(`^identity file ${file}: `));
    });
  }

  it('accepts a JSON file without the redundant publicKey/routingId fields', async () => {
    const file = join(dir, 'minimal.json');
    await writeFile(file, JSON.stringify({ type: 'ridproxy-identity', version: 1, privateKey: goodJson.privateKey }), { mode: 0o600 });
    expect((await loadIdentity(file)).routingId.equals(good.routingId)).toBe(true);
  });

  it.each([0o644, 0o640, 0o604, 0o660])('refuses a key file of mode %s, which group or others may access, as ssh does', async (mode) => {
    for (const [name, text] of [
      ['open.pem', good.toPem()],
      ['open.json', JSON.stringify(goodJson)],
    ]) {
      const file = join(dir, name);
      await writeFile(file, text, { mode: 0o600 });
      expect((await loadIdentity(file)).routingId.equals(good.routingId)).toBe(true);
      await chmod(file, mode);
      const octal = `0${mode.toString(8)}`;
      await expectRejects(loadIdentity(file), 'ERR_INVALID_IDENTITY', new RegExp(`^Permissions ${octal} for '${file}' are too open: .*; chmod 600 '${file}'$`));
      await chmod(file, 0o400);
      expect((await loadIdentity(file)).routingId.equals(good.routingId)).toBe(true);
      await rm(file, { force: true });
    }
  });
});
