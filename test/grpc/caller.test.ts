import { credentials, Metadata, ServerCredentials } from '@grpc/grpc-js';
import { describe, expect, test } from 'vitest';
import type { Manager } from '../../src/index.js';
import { grpcCaller } from '../../src/grpc/index.js';
import { useNetwork } from '../fixtures.js';
import { collect, unary } from './service.js';
import { anotherCaller, clientOf, forwardTunnel, reverseTunnel } from './tunnels.js';

const net = useNetwork({ checkLeaks: true });

/** What the service's who methods report for a caller: its routing ID and public key. */
function nameOf(manager: Manager): string {
  return `${manager.routingId}:${manager.identity.publicKey.toString('hex')}`;
}

/** Twenty messages on a whoStream call, sent in two bursts; resolves to the callers the handler saw. */
async function whoStream(client: any): Promise<string[]> {
  const call = client.whoStream();
  const replies = collect(call);
  for (let i = 0; i < 10; i++) call.write({ i });
  await new Promise((resolve) => setTimeout(resolve, 10));
  for (let i = 10; i < 20; i++) call.write({ i });
  call.end();
  return (await replies).map((r: { caller: string }) => r.caller);
}

describe('grpcCaller()', () => {
  test('a handler sees the routing id and key of whichever of two callers sent the call, in calls running side by side', async () => {
    const { client, clientManager, endpoint } = await forwardTunnel(net);
    const other = await anotherCaller(net, endpoint);
    const callers = [
      { client, name: nameOf(clientManager) },
      { client: other.client, name: nameOf(other.manager) },
    ];
    expect(callers[0]!.name).not.toBe(callers[1]!.name);

    const unaries = await Promise.all(callers.flatMap(({ client: c }) => Array.from({ length: 20 }, () => unary(c, 'who', {}))));
    expect(unaries.map((r) => [r.first, r.later])).toEqual([...Array(20).fill([callers[0]!.name, callers[0]!.name]), ...Array(20).fill([callers[1]!.name, callers[1]!.name])]);

    const streams = await Promise.all(callers.map(({ client: c }) => whoStream(c)));
    expect(streams).toEqual(callers.map(({ name }) => Array(20).fill(name)));
  });

  test('metadata claiming another identity changes nothing: the handler still sees the flow\'s peer', async () => {
    const { client, clientManager, serverManager } = await forwardTunnel(net);
    const metadata = new Metadata();
    metadata.set('x-ridproxy-caller', nameOf(serverManager));
    const reply = await unary(client, 'who', {}, metadata);
    expect(reply.claimed).toBe(nameOf(serverManager));
    expect(reply.first).toBe(nameOf(clientManager));
  });

  test('a call that did not come over a flow, on a port of the same server, has no caller; nor does code outside a call', async () => {
    const { server } = await forwardTunnel(net);
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    const direct = clientOf(net, `127.0.0.1:${port}`, credentials.createInsecure());
    expect(await unary(direct, 'who', {})).toMatchObject({ first: null, later: null });
    expect(grpcCaller()).toBeUndefined();
  });

  test('an agent serving its hub over the VC it dialed sees the hub as the caller', async () => {
    const { hub, client } = await reverseTunnel(net);
    expect(await unary(client, 'who', {})).toMatchObject({ first: nameOf(hub), later: nameOf(hub) });
  });
});
