import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The hostile-input suite measures heap after garbage collection.
    execArgv: ['--expose-gc'],
    setupFiles: ['test/setup.ts'],
  },
});
