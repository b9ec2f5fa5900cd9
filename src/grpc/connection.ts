import { Duplex } from 'node:stream';
import { ManagerError } from '../errors.js';
import type { Endpoint } from '../id/endpoint.js';
import type { Flow } from '../manager/flow.js';
import type { Manager } from '../manager/manager.js';
import type { DialOptions } from '../manager/options.js';

/**
 * A Duplex for `http2.connect(authority, { createConnection: () => createConnection(manager, endpoint) })`:
 * http2 wants its connection synchronously, so this one buffers writes until the dial resolves and
 * fails (emitting the dial's RidproxyError) if it does not. With a flow already in hand, pass the flow itself.
 */
export function createConnection(manager: Manager, destination: string | Endpoint, options: DialOptions = {}): Duplex {
  return new DialingConnection(manager.dial(destination, options));
}

class DialingConnection extends Duplex {
  private flow: Flow | undefined;
  private ending = false;

  constructor(private readonly pending: Promise<Flow>) {
    super({ allowHalfOpen: true });
    pending.then(
      (flow) => {
        if (this.destroyed) {
          flow.destroy();
          return;
        }
        this.flow = flow;
        flow.on('data', (chunk: Buffer) => {
          if (!this.push(chunk)) flow.pause();
        });
        flow.on('end', () => this.push(null));
        flow.on('error', (err) => this.destroy(err));
        // Only the manager's close() ends a flow's writing side for its owner: http2 must hear that, not write after the end.
        flow.on('finish', () => {
          if (!this.ending) this.destroy(new ManagerError('ERR_MANAGER_CLOSED', "the flow's manager was closed"));
        });
        // A flow destroyed without an error (its manager closed) must not leave this side hanging.
        flow.on('close', () => {
          if (!(flow.readableEnded && flow.writableFinished)) this.destroy(flow.errored ?? undefined);
        });
      },
      (err: Error) => this.destroy(err),
    );
  }

  override _read(): void {
    this.flow?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.pending.then((flow) => flow.write(chunk, callback), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.ending = true;
    this.pending.then((flow) => flow.end(callback), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.flow !== undefined && !this.flow.destroyed) this.flow.destroy(err ?? undefined);
    callback(err);
  }
}
