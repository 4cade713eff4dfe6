import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HostListResponse } from '../protocol/admin-hosts.js';
import type { DeployResponse, ServiceTeardownResponse, ServiceView } from '../protocol/deployment.js';
import type { OperationDetail, OperationView } from '../protocol/operations.js';
import { corral, startController, waitFor, type TestController } from './controller-fixture.js';
import { addWorker, LIVENESS_INTERVAL_MS, type FleetWorker } from './deploy-fixture.js';

// Runs the built CLI (`npx tsc -p .` first), as an operator would.
let t: TestController;
let dir: string;
const workers: FleetWorker[] = [];
let target: string[];

const SPEC_YAML = `# two services, one pinned to a host
services:
  - name: api
    command: /bin/sh
    args: ["-c", "exec sleep 300"]
    restart: always
    stopGraceMs: 1000
  - name: web
    command: /bin/sh
    args: ["-c", "exec sleep 300"]
    stopGraceMs: 1000
    healthCheck: { type: command, command: /bin/true, intervalMs: 500 }
    placement:
      hosts: [cli-b]
`;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-deploy-cli-'));
  t = await startController({ heartbeatIntervalMs: LIVENESS_INTERVAL_MS });
  for (const name of ['cli-a', 'cli-b']) workers.push(await addWorker(t, name));
  await waitFor(async () => {
    const { hosts } = (await t.admin<HostListResponse>('GET', '/v1/hosts')).body;
    return hosts.length === 2 && hosts.every((h) => h.status === 'online');
  });
  target = ['--url', t.endpoints.admin, '--token', t.adminToken];
});

afterAll(async () => {
  for (const w of workers) await w.destroy();
  await t.close();
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('corral controller deploy / services / ops / teardown', () => {
  it('refuses a bad spec file before calling anyone, naming the file and the field', async () => {
    const badField = await file('bad-field.yaml', SPEC_YAML.replace('restart: always', 'restart: sometimes'));
    // No --url: the spec is checked before the controller is looked for.
    const res = await corral(['controller', 'deploy', badField, '--state-dir', dir]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`${badField}: /services/0/restart`);

    const extra = await file(
      'extra.json',
      JSON.stringify({ services: [{ name: 'x', command: 'y', colour: 1 }] }),
    );
    const res2 = await corral(['controller', 'deploy', extra, '--state-dir', dir]);
    expect(res2.code).toBe(1);
    expect(res2.stderr).toContain(`${extra}: /services/0/colour`);

    const syntax = await file('syntax.yaml', 'services:\n  - name: a\n  name: b\n   - x');
    const res3 = await corral(['controller', 'deploy', syntax, '--state-dir', dir]);
    expect(res3.code).toBe(1);
    expect(res3.stderr).toContain(`${syntax}: not valid YAML or JSON`);

    const huge = await file('huge.yaml', `# ${'x'.repeat(1024 * 1024)}\n`);
    const res4 = await corral(['controller', 'deploy', huge, '--state-dir', dir]);
    expect(res4.code).toBe(1);
    expect(res4.stderr).toContain('larger than 1048576 bytes');
  });

  it('dry-runs, deploys, lists services and operations, and tears down', async () => {
    const specFile = await file('spec.yaml', SPEC_YAML);
    const dry = await corral(['controller', 'deploy', specFile, '--dry-run', '--json', ...target]);
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout) as DeployResponse;
    expect(plan).toMatchObject({ operationId: null, dryRun: true, ok: true });
    expect(plan.plan.find((p) => p.service === 'web')?.host).toBe('cli-b');

    const real = await corral(['controller', 'deploy', specFile, ...target]);
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/^SERVICE\s+HOST\s+CHANGE\s+PREVIOUS HOST\s+EFFECT\s+FIELDS CHANGED$/m);
    expect(real.stdout).toMatch(/^cli-b\s+applied\s+1\s+/m);
    const opId = /^operation (\S+)$/m.exec(real.stdout)?.[1];
    expect(opId).toBeDefined();

    await waitFor(async () => {
      const views = (await t.admin<{ services: ServiceView[] }>('GET', '/v1/services')).body.services;
      return views.length === 2 && views.every((v) => v.observed === 'running');
    });
    const listed = JSON.parse(
      (await corral(['controller', 'services', '--json', ...target])).stdout,
    ) as ServiceView[];
    expect(listed.map((v) => [v.service, v.host, v.desired, v.observed])).toEqual([
      ['api', 'cli-a', 'running', 'running'],
      ['web', 'cli-b', 'running', 'running'],
    ]);
    const table = await corral(['controller', 'services', '--host', 'cli-b', ...target]);
    expect(table.stdout).toMatch(
      /^SERVICE\s+HOST\s+RUNTIME\s+IMAGE\s+CONTAINER\s+DESIRED\s+OBSERVED\s+RESTARTS\s+LAST ERROR\s+UPDATED$/m,
    );
    expect(table.stdout).toMatch(/^web\s+cli-b\s+process\s+-\s+-\s+running\s+running\s+0\s+-/m);
    const badState = await corral(['controller', 'services', '--state', 'sleepy', ...target]);
    expect(badState.code).toBe(2);

    const ops = JSON.parse(
      (await corral(['controller', 'ops', '--json', ...target])).stdout,
    ) as OperationView[];
    expect(ops[0]).toMatchObject({ id: opId, kind: 'deploy', state: 'succeeded' });
    const shown = await corral(['controller', 'ops', 'show', opId ?? '', ...target]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^state\s+succeeded$/m);
    expect(shown.stdout).toMatch(/\[cli-b\] generation 1 accepted/);
    const followed = await corral(['controller', 'ops', 'show', opId ?? '', '--follow', '--json', ...target]);
    expect(followed.code).toBe(0);
    const detail = JSON.parse(followed.stdout) as OperationDetail;
    expect(detail.log.at(-1)?.message).toMatch(/^deploy succeeded/);

    const refused = await corral(['controller', 'teardown', ...target]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('refusing to tear down EVERY deployed service without --yes');

    const down = await corral(['controller', 'teardown', '--service', 'api', '--yes', '--json', ...target]);
    expect(down.code).toBe(0);
    const td = JSON.parse(down.stdout) as ServiceTeardownResponse;
    expect(td.removed.map((r) => r.service)).toEqual(['api']);
    const rest = await corral(['controller', 'teardown', '--yes', ...target]);
    expect(rest.code).toBe(0);
    expect(rest.stdout).toMatch(/^web\s+cli-b$/m);
  });

  it('exits 1 when a host fails (still printing the JSON), and when no host can take a service', async () => {
    const unplaceable = await file(
      'nowhere.yaml',
      'services:\n  - name: api\n    command: /bin/true\n    placement: { labels: { zone: mars } }\n',
    );
    const res = await corral(['controller', 'deploy', unplaceable, ...target]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('api (no eligible online host for labels zone=mars)');
    expect(res.stderr).toContain('CORRAL_ERR_PLACEMENT');

    await workers[1]?.stop();
    try {
      const specFile = await file('spec2.yaml', SPEC_YAML);
      const partial = await corral(['controller', 'deploy', specFile, '--json', ...target]);
      expect(partial.code).toBe(1);
      const body = JSON.parse(partial.stdout) as DeployResponse;
      expect(body.ok).toBe(false);
      expect(body.hosts.find((h) => h.host === 'cli-b')?.outcome).toBe('failed');
      expect(body.hosts.find((h) => h.host === 'cli-a')?.outcome).toBe('applied');
      expect(partial.stderr).toContain(`1 of 2 hosts failed`);
      const failed = JSON.parse(
        (await corral(['controller', 'services', '--state', 'failed', '--json', ...target])).stdout,
      ) as ServiceView[];
      expect(failed.map((v) => `${v.service}@${v.host}`)).toEqual(['web@cli-b']);
      const follow = await corral([
        'controller',
        'ops',
        'show',
        body.operationId ?? '',
        '--follow',
        ...target,
      ]);
      expect(follow.code).toBe(1);
      expect(follow.stderr).toContain('partial');
    } finally {
      await workers[1]?.start();
    }
  });
});
