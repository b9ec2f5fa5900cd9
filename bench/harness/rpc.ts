/**
 * Request/response over the IPC channel of a forked worker. Each worker declares its API as an
 * interface of async methods taking one JSON-serializable parameter; the parent calls them by name
 * (harness/children.ts). This file is the worker side and the shared message shapes.
 */

/** What a worker API looks like: every method takes one parameter object and returns a promise. */
export type WorkerApi<Api> = { [K in keyof Api]: (params: never) => Promise<unknown> };

export interface RpcRequest {
  id: number;
  method: string;
  params: unknown;
}

export type RpcResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

/** Sent once by a worker when its handlers are installed. */
export const READY = 'ready';

function isRequest(message: unknown): message is RpcRequest {
  return typeof message === 'object' && message !== null && 'id' in message && 'method' in message;
}

/** Serves `api` over process IPC; the worker exits when the parent goes away, so no bench process outlives a crashed run. */
export function serveRpc<Api extends WorkerApi<Api>>(api: Api): void {
  if (!process.send) throw new Error('this file is a bench worker: start it with child_process.fork');
  const send = (message: RpcResponse | string): void => {
    process.send?.(message);
  };
  const handlers = api as unknown as Record<string, ((params: unknown) => Promise<unknown>) | undefined>;
  process.on('message', (message: unknown) => {
    if (!isRequest(message)) return;
    const handler = Object.hasOwn(handlers, message.method) ? handlers[message.method] : undefined;
    if (!handler) {
      send({ id: message.id, ok: false, error: `unknown method ${message.method}` });
      return;
    }
    handler(message.params).then(
      (result) => send({ id: message.id, ok: true, result: result ?? null }),
      (err: unknown) => send({ id: message.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  send(READY);
}
