import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    // Each file gets its own process: Dawn's native device is not shared across workers.
    pool: 'forks',
    // lavapipe's worker threads are the GPU: two files at once on two cores is the most that helps.
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
