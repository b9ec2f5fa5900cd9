/** Command-line options of `npm run bench`. Unknown flags are an error so a typo does not silently run the full bench. */

export const SCENARIOS = ['bulk', 'latency', 'setup', 'memory', 'fairness', 'interactive', 'active', 'longpath', 'cluster', 'reconnect'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export const PATHS = ['direct', 'relay', 'chain', 'ssh', 'library', 'library-plain', 'cli'] as const;
export type PathName = (typeof PATHS)[number];

/** Path groups accepted by --only, besides single names. */
const PATH_GROUPS: Record<string, readonly PathName[]> = {
  baselines: ['direct', 'relay', 'chain', 'ssh'],
  ridproxy: ['library', 'library-plain', 'cli'],
  /** The library both ways: encrypted (the default) and with `encryption: false`. */
  libraries: ['library', 'library-plain'],
};

export interface Options {
  quick: boolean;
  /** Measured rounds per scenario; each round runs every path once, back to back. */
  rounds: number;
  scenarios: ScenarioName[];
  paths: PathName[];
  /** Skip writing bench/results/<timestamp>.json. */
  noWrite: boolean;
}

export const USAGE = `usage: npm run bench -- [--quick] [--rounds N] [--only LIST] [--no-write]
  --quick       about 2 minutes: smaller transfers and counts, 2 rounds
  --rounds N    measured rounds per scenario (default 5, quick 2)
  --only LIST   comma-separated scenarios (${SCENARIOS.join(', ')})
                and/or paths (${PATHS.join(', ')}, or the groups baselines, ridproxy, libraries);
                e.g. --only baselines   or   --only bulk,latency,library
  --no-write    do not write bench/results/<timestamp>.json`;

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[]): Options {
  let quick = false;
  let rounds: number | undefined;
  let noWrite = false;
  const scenarios = new Set<ScenarioName>();
  const paths = new Set<PathName>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    if (arg === '--quick') quick = true;
    else if (arg === '--no-write') noWrite = true;
    else if (arg === '--rounds') {
      const text = value();
      const n = Number(text);
      if (!Number.isInteger(n) || n < 1 || n > 50) throw new UsageError(`--rounds must be an integer from 1 to 50, not ${JSON.stringify(text)}`);
      rounds = n;
    } else if (arg === '--only') {
      for (const token of value().split(',').map((t) => t.trim()).filter((t) => t.length > 0)) {
        if ((SCENARIOS as readonly string[]).includes(token)) scenarios.add(token as ScenarioName);
        else if ((PATHS as readonly string[]).includes(token)) paths.add(token as PathName);
        else if (token in PATH_GROUPS) for (const p of PATH_GROUPS[token]) paths.add(p);
        else throw new UsageError(`--only: unknown scenario or path ${JSON.stringify(token)}`);
      }
    } else throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
  }
  return {
    quick,
    rounds: rounds ?? (quick ? 2 : 5),
    noWrite,
    scenarios: scenarios.size > 0 ? SCENARIOS.filter((s) => scenarios.has(s)) : [...SCENARIOS],
    paths: paths.size > 0 ? PATHS.filter((p) => paths.has(p)) : [...PATHS],
  };
}
