import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { TLSSocket, createSecureContext, type SecureContext } from 'node:tls';
import { InvalidArgumentError, TimeoutError } from '../errors.js';

/** Milliseconds a client has to finish its TLS handshake with `serve --tls-cert`. */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10_000;

/** A certificate chain and its private key, as PEM. */
export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
}

/**
 * A certificate and key read from files, checked to work together, and read again by `reload`
 * (SIGHUP) for renewed certificates. `serve --tls-cert/--tls-key` uses it as the server end of
 * TLS for connections the proxy's blind TLS ingress passed on whole (docs/protocol.md 10.4), so
 * the key stays on the serving machine and the proxy only ever carried ciphertext; `proxy start
 * --https` uses it for the proxy's own TLS listener.
 */
export class TlsTermination {
  private constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private loaded: { credentials: TlsCredentials; context: SecureContext },
  ) {}

  static async load(certFile: string, keyFile: string): Promise<TlsTermination> {
    return new TlsTermination(certFile, keyFile, await contextFrom(certFile, keyFile));
  }

  /** Reads the files again; on failure throws and keeps the certificate in use. */
  async reload(): Promise<void> {
    this.loaded = await contextFrom(this.certFile, this.keyFile);
  }

  /** What was read last, for a TLS server of Node's own (`setSecureContext` after a reload). */
  get credentials(): TlsCredentials {
    return this.loaded.credentials;
  }

  /**
   * The plaintext side of a TLS server over `stream` (a flow whose bytes are the client's TLS).
   * A handshake not finished within `timeout` ms destroys it with ERR_TIMEOUT.
   */
  accept(stream: Duplex, timeout = DEFAULT_TLS_HANDSHAKE_TIMEOUT): TLSSocket {
    const socket = new TLSSocket(stream as never, { isServer: true, secureContext: this.loaded.context });
    socket.on('error', () => undefined);
    const timer = setTimeout(() => socket.destroy(new TimeoutError(`the TLS handshake did not finish within ${timeout} ms`)), timeout);
    const done = (): void => clearTimeout(timer);
    socket.once('secure', done);
    socket.once('close', done);
    // The TLS socket does not always take the stream down with it (an error before the handshake).
    socket.once('close', () => {
      if (!stream.writableFinished) stream.destroy();
    });
    return socket;
  }
}

async function contextFrom(certFile: string, keyFile: string): Promise<{ credentials: TlsCredentials; context: SecureContext }> {
  const read = async (file: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new InvalidArgumentError('ERR_INVALID_OPTION', `cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  const [cert, key] = await Promise.all([read(certFile, 'certificate'), read(keyFile, 'key')]);
  try {
    return { credentials: { cert, key }, context: createSecureContext({ cert, key }) };
  } catch (err) {
    throw new InvalidArgumentError('ERR_INVALID_OPTION', `cannot use the TLS certificate ${certFile} with the key ${keyFile}: ${(err as Error).message}`);
  }
}
