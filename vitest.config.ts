import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['{protocol,pki,kit,controller,agent,updater,forwarder,cli,ui,test}/**/*.test.ts'],
    exclude: ['dist/**', 'node_modules/**'],
    // Starts one PostgreSQL cluster for the run when CORRAL_TEST_DATABASE=postgres; else nothing.
    globalSetup: ['test/postgres-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
