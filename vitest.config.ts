import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{protocol,pki,kit,controller,agent,updater,forwarder,cli,ui,test}/**/*.test.ts'],
    exclude: ['dist/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
