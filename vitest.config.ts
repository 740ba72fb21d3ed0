import { defineConfig } from 'vitest/config'

// Two projects so the fast loop (unit) never waits on sockets, Redis or an AS.
export default defineConfig({
  test: {
    pool: 'forks',
    // Integration files each start their own AS, upstream and Redis; the machines have two
    // cores, so two files at a time keeps timings honest.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 10_000 } },
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 30_000 } },
    ],
  },
})
