/**
 * The library, loaded on demand: the baselines must run while src/ is still being written, so
 * nothing in the bench imports it statically. Types come from the source as usual.
 */
export type Ridproxy = typeof import('../../src/index.js');

let loaded: Promise<Ridproxy> | undefined;

export function loadRidproxy(): Promise<Ridproxy> {
  // dist/bench/lib/ridproxy.js -> dist/src/index.js
  loaded ??= import('../../src/index.js');
  return loaded;
}

/** Why the library cannot be used in this run, or undefined when it loads and has what the bench needs. */
export async function ridproxyProblem(): Promise<string | undefined> {
  try {
    const lib = await loadRidproxy();
    if (typeof lib.Proxy?.listen !== 'function' || typeof lib.Manager !== 'function') return 'dist/src/index.js lacks Proxy.listen or Manager';
    return undefined;
  } catch (err) {
    loaded = undefined;
    return `cannot load the library (dist/src/index.js): ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
  }
}

export type RidproxyGrpc = typeof import('../../src/grpc/index.js');

let loadedGrpc: Promise<RidproxyGrpc> | undefined;

/** ridproxy/grpc, loaded on demand like the library itself. */
export function loadRidproxyGrpc(): Promise<RidproxyGrpc> {
  loadedGrpc ??= import('../../src/grpc/index.js');
  return loadedGrpc;
}
