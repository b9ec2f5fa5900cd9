import { randomBytes } from 'node:crypto';
import { generateEphemeral, signProof, transcriptHash, type EphemeralKey, type HopRole } from '../../src/hop/handshake.js';
import type { Identity } from '../../src/id/identity.js';
import { FrameType, encodeHeader, encodeHello, encodePreface } from '../../src/wire/index.js';

/** One frame as bytes, for peers that write the wire by hand. */
export function frame(type: FrameType, vci: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader(type, vci, payload.length), payload]);
}

/** A hand-driven side of the hop handshake: what a hostile or scripted peer sends. */
export class RawHandshake {
  readonly ephemeral: EphemeralKey = generateEphemeral();
  readonly hello: Buffer;

  constructor(
    readonly identity: Identity,
    readonly role: HopRole,
  ) {
    this.hello = encodeHello(identity.publicKey, this.ephemeral.publicKey, randomBytes(32));
  }

  /** Preface and Hello, as a side sends them on connecting. */
  opening(): Buffer {
    return Buffer.concat([encodePreface(), frame(FrameType.Hello, 0, this.hello)]);
  }

  /** This side's Proof frame, given the peer's Hello payload. */
  proof(peerHello: Buffer): Buffer {
    const transcript = this.role === 'initiator' ? transcriptHash(this.hello, peerHello) : transcriptHash(peerHello, this.hello);
    return frame(FrameType.Proof, 0, signProof(this.identity, this.role, transcript));
  }
}
