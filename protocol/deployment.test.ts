import { describe, expect, it } from 'vitest';
import {
  DeploymentSpec,
  hostVariableProblem,
  toServiceSpec,
  type DeploymentProcessService,
} from './deployment.js';
import { parseWith } from './validate.js';

const svc = (extra: Partial<DeploymentProcessService> = {}): DeploymentProcessService => ({
  name: 'api',
  command: '/bin/app',
  ...extra,
});

describe('deployment spec', () => {
  it('fills the agent defaults and drops placement', () => {
    expect(toServiceSpec(svc({ placement: { hosts: ['a'] } }))).toEqual({
      name: 'api',
      runtime: 'process',
      command: '/bin/app',
      args: [],
      env: {},
      restart: 'on-failure',
    });
  });

  it('names the field of a schema error', () => {
    expect(() =>
      parseWith(DeploymentSpec, { services: [svc({ restart: 'maybe' as never })] }, 'f.yaml'),
    ).toThrow(/^f\.yaml: \/services\/0\/restart: /);
    expect(() =>
      parseWith(DeploymentSpec, { services: [{ ...svc(), placement: { zone: 'x' } }] }, 'f'),
    ).toThrow(/\/services\/0\/placement\/zone/);
    expect(() => parseWith(DeploymentSpec, { services: [] }, 'f')).toThrow(/\/services/);
  });

  it.each([
    [svc({ args: ['--bind', '${host.address}:80', '$${literal}'] }), undefined],
    [svc({ env: { NAME: '${ host.name }' }, workingDir: '/srv/${host.id}' }), undefined],
    [svc({ args: ['ok', '${host.port}'] }), '/services/0/args/1 uses unknown variable ${host.port}'],
    [svc({ env: { A: 'x${host.name' } }), '/services/0/env/A has an unterminated ${'],
    [
      svc({ healthCheck: { type: 'http', url: 'http://${host.ip}/health' } }),
      '/services/0/healthCheck/url uses unknown variable ${host.ip}',
    ],
    [svc({ command: '${HOME}/bin/app' }), '/services/0/command uses unknown variable ${HOME}'],
  ])('checks host variables (%#)', (service, problem) => {
    const found = hostVariableProblem({ services: [service] });
    if (problem === undefined) expect(found).toBeUndefined();
    else expect(found?.startsWith(problem)).toBe(true);
  });
});
