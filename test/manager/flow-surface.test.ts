import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { VirtualCircuit } from '../../src/hop/circuit.js';
import { HopConnection } from '../../src/hop/connection.js';
import { Link } from '../../src/manager/link.js';
import { YamuxSession } from '../../src/mux/index.js';
import type { Flow } from '../../src/index.js';
import { useNetwork } from '../fixtures.js';

/** A leak of a lower layer shows up as a new string key, own or on a prototype of ours. */
function publicKeys(object: object, stopAt: object): string[] {
  const keys = new Set(Object.keys(object));
  for (let proto = Object.getPrototypeOf(object) as object | null; proto !== null && proto !== stopAt; proto = Object.getPrototypeOf(proto) as object | null) {
    for (const key of Object.getOwnPropertyNames(proto)) if (key !== 'constructor') keys.add(key);
  }
  return [...keys].filter((key) => !key.startsWith('_')).sort();
}

/** Every value one property away from `object` (getters read), to catch a lower layer under any name. */
function reachable(object: object): unknown[] {
  const values: unknown[] = [];
  for (let o: object | null = object; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Reflect.ownKeys(o)) {
      try {
        values.push(Reflect.get(object, key));
      } catch {
        // A getter that needs some state: not a path by itself.
      }
    }
  }
  return values;
}

const LOWER_LAYERS = [YamuxSession, VirtualCircuit, HopConnection, Link];

describe("a Flow's surface", () => {
  const net = useNetwork({ checkLeaks: true });

  async function flows(): Promise<[Flow, Flow]> {
    const server = net.manager();
    const client = net.manager();
    const dialed = await client.dial(await server.listen('127.0.0.1:0'));
    dialed.write('x');
    return [dialed, await server.accept()];
  }

  it('is the documented one (README, library section), on both ends', async () => {
    for (const flow of await flows()) {
      // allowHalfOpen is Duplex's own; id is the flow's yamux stream id.
      expect(publicKeys(flow, Duplex.prototype)).toEqual(
        ['allowHalfOpen', 'conn', 'id', 'localEndpoint', 'markAccepted', 'push', 'read', 'readMsg', 'receiveWindow', 'remoteEndpoint', 'remotePublicKey', 'writeMsg', 'writeMsgAndClose'].sort(),
      );
      expect(publicKeys(flow.conn, Object.prototype)).toEqual(
        ['close', 'closed', 'destroy', 'dialer', 'goAway', 'isOpen', 'lastUsed', 'localEndpoint', 'openFlow', 'ping', 'receiveWindow', 'remoteEndpoint', 'remotePublicKey', 'remoteRoutingId', 'rtt'].sort(),
      );
    }
  });

  it('leads to neither the mux session nor the circuit nor the hop link beneath it', async () => {
    for (const flow of await flows()) {
      const near = [...reachable(flow), ...reachable(flow.conn)];
      for (const layer of LOWER_LAYERS) expect(near.filter((value) => value instanceof layer), layer.name).toEqual([]);
      // The secure channel the session runs over is a Duplex too; the flow itself is the only one to reach.
      expect(near.filter((value) => value instanceof Duplex && value !== flow)).toEqual([]);
    }
  });
});
