import { defineConfig } from 'vitest/config';
import base from './vitest.config';

/**
 * `npm run test:postgres`: the controller test files that exercise the database most, run
 * with CORRAL_TEST_DATABASE=postgres, so every controller they start runs on a database of
 * its own in one PostgreSQL cluster shared by the run (test/postgres-global-setup.ts). Files
 * mostly about processes, the updater, TLS or a browser stay on the SQLite pass only, to keep
 * this pass to a few minutes. CORRAL_TEST_POSTGRES=0 skips the pass (no files, said so).
 */
const FILES = [
  'test/test-database.test.ts',
  'test/admin-token-reload.test.ts',
  'test/approvals-actions.test.ts',
  'test/controller-cli.test.ts',
  'test/controller-decommission.test.ts',
  'test/controller-enroll.test.ts',
  'test/controller-heartbeat.test.ts',
  'test/controller-renew.test.ts',
  'test/controller-restart.test.ts',
  'test/decommission-notice.test.ts',
  'test/deploy.test.ts',
  'test/diagnose.test.ts',
  'test/enroll-replace.test.ts',
  'test/event-retention.test.ts',
  'test/events-cli.test.ts',
  'test/fleet-event-retention.test.ts',
  'test/fleet-events-hosts.test.ts',
  'test/fleet-events-stream.test.ts',
  'test/heartbeat-flood.test.ts',
  'test/host-list-paging.test.ts',
  'test/join.test.ts',
  'test/metrics-per-host-cap.test.ts',
  'test/metrics.test.ts',
  'test/operators.test.ts',
  'test/renew-decommission-race.test.ts',
  'test/renew-retry.test.ts',
  'test/retry-escalation.test.ts',
  'test/rollout-deploy.test.ts',
  'test/scheduling.test.ts',
  'test/webhooks.test.ts',
  'test/worker-cert-expired.test.ts',
];

// Spread, not mergeConfig: that would add these files to the base include instead of replacing it.
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: process.env.CORRAL_TEST_POSTGRES === '0' ? [] : FILES,
    passWithNoTests: true,
  },
});
