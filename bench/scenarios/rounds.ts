import type { Skip } from '../harness/results.js';
import type { Context } from '../paths/topology.js';
import type { Route } from '../paths/types.js';

function message(err: unknown): string {
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

/**
 * Runs `measure` for every route in every round, back to back. The order rotates each round so
 * no path always runs first (right after a process start, or while the CPU is still hot from
 * another). A route that fails is dropped from later rounds and reported as skipped, so a
 * half-built library cannot stop the baselines from being measured.
 */
export async function runRounds(
  ctx: Context,
  routes: readonly Route[],
  skipped: Skip[],
  hooks: {
    /** Untimed first use of each route: JIT, connection caches, the VC. */
    warmup?: (route: Route) => Promise<void>;
    measure: (route: Route, round: number) => Promise<void>;
    /** After every route ran in a round (e.g. figures relative to another path of the same round). */
    afterRound?: (round: number) => void;
  },
): Promise<void> {
  const failed = new Set<Route>();
  const attempt = async (route: Route, what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (err) {
      failed.add(route);
      skipped.push({ path: route.path, reason: `failed during ${what}: ${message(err)}` });
      ctx.log(`  ${route.path}: failed during ${what}: ${message(err)}`);
    }
  };
  if (hooks.warmup) {
    for (const route of routes) await attempt(route, 'warm-up', () => hooks.warmup!(route));
  }
  for (let round = 0; round < ctx.options.rounds; round++) {
    const live = routes.filter((r) => !failed.has(r));
    if (live.length === 0) return;
    const order = live.map((_, i) => live[(i + round) % live.length]);
    for (const route of order) {
      await attempt(route, `round ${round + 1}`, () => hooks.measure(route, round));
    }
    hooks.afterRound?.(round);
    ctx.log(`  round ${round + 1}/${ctx.options.rounds} done`);
  }
}
