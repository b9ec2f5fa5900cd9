import { afterEach, beforeEach } from 'vitest';
import { Manager, Proxy, type ManagerOptions, type ProxyOptions } from '../src/index.js';
import { activeResources, expectNoLeaks } from './helpers.js';

/**
 * Managers and proxies for one test file, closed after each test in reverse order of creation;
 * with `checkLeaks`, each test must also leave no socket, server or timer behind.
 */
export function useNetwork(options: { checkLeaks?: boolean } = {}): {
  manager(options?: ManagerOptions): Manager;
  proxy(options?: ProxyOptions): Promise<Proxy>;
  defer(cleanup: () => Promise<unknown>): void;
} {
  const cleanups: Array<() => Promise<unknown>> = [];
  let baseline: Record<string, number> = {};
  beforeEach(() => {
    baseline = activeResources();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    if (options.checkLeaks) await expectNoLeaks(baseline);
  });
  return {
    manager(managerOptions = {}) {
      const manager = new Manager(managerOptions);
      cleanups.push(() => manager.close());
      return manager;
    },
    async proxy(proxyOptions = {}) {
      const proxy = await Proxy.listen(proxyOptions);
      cleanups.push(() => proxy.close());
      return proxy;
    },
    defer(cleanup) {
      cleanups.push(cleanup);
    },
  };
}

/** Echoes every accepted flow back to its sender until the manager stops. */
export function serveEcho(manager: Manager): void {
  void (async () => {
    for await (const flow of manager) {
      // Flows still open when the test closes its managers end with ERR_MANAGER_CLOSED.
      flow.on('error', () => undefined);
      flow.pipe(flow);
    }
  })();
}
