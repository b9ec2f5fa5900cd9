import { connect, RequestError, TimeoutError, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';

/** What a lookup found: the holder's answer, nobody (no proxy subscribes to the routing id), or why the directory could not say. */
export type Lookup = { answer: Uint8Array } | { none: true } | { unreachable: string };

export interface DirectoryOptions {
  /** NATS server URLs. */
  servers: string[];
  /** The subject namespace: `ridproxy.<cluster>.rid.<routing id>`. */
  cluster: string;
  /** The NATS connection's name, for the server's monitoring. */
  name: string;
  /** Milliseconds a lookup waits for the holder's answer. */
  lookupTimeout: number;
  /** The NATS server's authorization token, if it requires one. */
  token?: string;
  /** Milliseconds one attempt to connect to a NATS server may take. */
  connectTimeout: number;
  /** The answer to a lookup of `rid`, held here; undefined when it is no longer held. */
  answer(rid: string): Uint8Array | undefined;
  /** A message published (not requested) on the subject of `rid`, held here: another proxy's claim. */
  message(rid: string, data: Uint8Array): void;
  /** The directory became reachable (`up`) or stopped being so, and why. Subscriptions are in place again when it is up. */
  state(up: boolean, detail: string): void;
}

/** Milliseconds between attempts to make the first connection, at most; the NATS client's own reconnects are quicker. */
const MAX_CONNECT_BACKOFF = 2000;

/**
 * The cluster's shared directory, on NATS: one subject per routing id, subscribed by the proxy
 * that holds its registration, which answers requests on it (lookups) and reads what is
 * published on it (claims). A lookup with no subscriber is answered at once by the NATS server
 * ("no responders"), which is how an unknown routing id is known fast.
 *
 * While NATS is unreachable it is `up` false: lookups answer `unreachable` at once instead of
 * waiting, and nothing is published (claims are published again on reconnection). The client
 * reconnects by itself, forever, and restores the subscriptions.
 */
export class Directory {
  private nc: NatsConnection | undefined;
  /** The routing ids held here, with their subscriptions while connected. */
  private readonly held = new Map<string, Subscription | undefined>();
  private connected = false;
  private closed = false;
  private wake: (() => void) | undefined;
  private running: Promise<void>;
  private resolveReady!: () => void;
  /** Resolves once the directory was first reached, or when it is closed. */
  readonly ready = new Promise<void>((resolve) => {
    this.resolveReady = resolve;
  });

  constructor(private readonly options: DirectoryOptions) {
    this.running = this.run();
  }

  get up(): boolean {
    return this.connected && !this.closed;
  }

  get size(): number {
    return this.held.size;
  }

  /** Subscribes to `rid`'s subject (now, or once connected): this proxy answers lookups for it. */
  hold(rid: string): void {
    if (this.held.has(rid)) return;
    this.held.set(rid, this.nc === undefined ? undefined : this.subscribe(rid));
  }

  release(rid: string): void {
    if (!this.held.has(rid)) return;
    const sub = this.held.get(rid);
    this.held.delete(rid);
    try {
      sub?.unsubscribe();
    } catch {
      // The connection is closing: its subscriptions go with it.
    }
  }

  /** Publishes on `rid`'s subject while the directory is up; a message that cannot be sent now is dropped (the caller publishes again on reconnection). */
  publish(rid: string, data: Uint8Array): boolean {
    if (!this.up || this.nc === undefined) return false;
    try {
      this.nc.publish(this.subject(rid), data);
      return true;
    } catch {
      return false;
    }
  }

  /** Asks who holds `rid`: the first answer, or nobody, or why the directory could not say. Never waits for a directory that is down. */
  async lookup(rid: string): Promise<Lookup> {
    const nc = this.nc;
    if (!this.up || nc === undefined) return { unreachable: `the cluster directory (NATS at ${this.options.servers.join(', ')}) is unreachable` };
    try {
      const reply: Msg = await nc.request(this.subject(rid), undefined, { timeout: this.options.lookupTimeout });
      return { answer: reply.data };
    } catch (err) {
      if (err instanceof RequestError && err.isNoResponders()) return { none: true };
      if (err instanceof TimeoutError) {
        return { unreachable: `neither the cluster directory (NATS at ${this.options.servers.join(', ')}) nor a proxy holding ${rid} answered within ${this.options.lookupTimeout} ms` };
      }
      return { unreachable: `the cluster directory (NATS at ${this.options.servers.join(', ')}) failed the lookup: ${(err as Error).message}` };
    }
  }

  /** Resolves once the NATS server has processed everything sent so far (subscriptions included), or at once while it is down. */
  async flush(): Promise<void> {
    if (!this.up || this.nc === undefined) return;
    await this.nc.flush().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake?.();
    this.resolveReady();
    await this.running;
    const nc = this.nc;
    this.nc = undefined;
    this.held.clear();
    // The server drops this connection's subscriptions with it: other proxies' lookups for what
    // was held here find no responder from now on.
    if (nc !== undefined) await nc.close().catch(() => undefined);
  }

  private subject(rid: string): string {
    return `ridproxy.${this.options.cluster}.rid.${rid}`;
  }

  private subscribe(rid: string): Subscription {
    return this.nc!.subscribe(this.subject(rid), {
      callback: (err, msg) => {
        if (err !== null) return;
        // Whatever arrives is from the network: nothing it holds may throw out of here.
        try {
          if (msg.reply) {
            const answer = this.options.answer(rid);
            if (answer !== undefined) msg.respond(answer);
          } else {
            this.options.message(rid, msg.data);
          }
        } catch {
          // Dropped: a malformed message is the sender's problem.
        }
      },
    });
  }

  /** Makes the first connection, retrying with backoff until it succeeds or the directory is closed; the client reconnects by itself after that. */
  private async run(): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        const nc = await connect({
          servers: this.options.servers,
          name: this.options.name,
          ...(this.options.token !== undefined && { token: this.options.token }),
          // A proxy never needs what it publishes itself: its own lookups must not reach its own subscriptions.
          noEcho: true,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
          reconnectJitter: 250,
          // A NATS server that vanishes without closing the connection is noticed within ~10 s.
          pingInterval: 5000,
          maxPingOut: 2,
          timeout: this.options.connectTimeout,
          noAsyncTraces: true,
        });
        if (this.closed) {
          await nc.close().catch(() => undefined);
          return;
        }
        this.adopt(nc);
        return;
      } catch (err) {
        if (attempt === 0) this.options.state(false, `cannot reach the cluster directory (NATS at ${this.options.servers.join(', ')}): ${(err as Error).message}; retrying`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(MAX_CONNECT_BACKOFF, 100 * 2 ** attempt));
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
      }
    }
  }

  private adopt(nc: NatsConnection): void {
    this.nc = nc;
    for (const rid of this.held.keys()) this.held.set(rid, this.subscribe(rid));
    this.connected = true;
    this.resolveReady();
    this.options.state(true, `connected to the cluster directory at ${nc.getServer()}`);
    void (async () => {
      for await (const status of nc.status()) {
        if (this.closed) return;
        if ((status.type === 'disconnect' || status.type === 'staleConnection') && this.connected) {
          this.connected = false;
          this.options.state(false, `lost the cluster directory${status.type === 'disconnect' ? ` at ${status.server}` : ' (it stopped answering pings)'}; reconnecting`);
        } else if (status.type === 'reconnect' && !this.connected) {
          this.connected = true;
          this.options.state(true, `reconnected to the cluster directory at ${status.server}`);
        }
      }
    })().catch(() => undefined);
    void nc.closed().then(() => {
      // Only a client that gave up (authentication refused twice, say) closes by itself: start over.
      if (this.closed || this.nc !== nc) return;
      this.nc = undefined;
      for (const rid of this.held.keys()) this.held.set(rid, undefined);
      if (this.connected) {
        this.connected = false;
        this.options.state(false, 'the connection to the cluster directory closed; reconnecting');
      }
      this.running = this.run();
    });
  }
}
