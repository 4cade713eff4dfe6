import { describe, expect, it } from 'vitest';
import { defaultRouteInterface, resolveSpec, resolveString, type HostFacts } from './host-vars.js';

const facts: HostFacts = { name: 'web-1', id: 'h-42', address: '10.0.0.5', interface: 'eth0' };

describe('host variables', () => {
  it.each([
    ['${host.name}', 'web-1'],
    ['--bind=${host.address}:80', '--bind=10.0.0.5:80'],
    ['${host.id}/${host.interface}', 'h-42/eth0'],
    ['${ host.name }', 'web-1'],
    ['$${host.name}', '${host.name}'],
    ['no variables, $HOME stays', 'no variables, $HOME stays'],
  ])('%s → %s', (input, output) => {
    expect(resolveString(input, facts, 'f')).toBe(output);
  });

  it.each([
    ['${host.port}', 'f uses unknown variable ${host.port}'],
    ['${HOME}', 'f uses unknown variable ${HOME}'],
    ['x ${host.name', 'f has an unterminated ${'],
  ])('refuses %s naming the field', (input, message) => {
    expect(() => resolveString(input, facts, 'f')).toThrow(message);
  });

  it('refuses ${host.interface} on a host without a default route', () => {
    expect(() => resolveString('${host.interface}', { ...facts, interface: undefined }, 'f')).toThrow(
      'cannot resolve',
    );
  });

  it('resolves every string field of a spec and names the field of a failure', () => {
    const spec = {
      name: 'svc',
      runtime: 'process' as const,
      command: '/srv/${host.name}/bin',
      args: ['--id', '${host.id}'],
      env: { ADDR: '${host.address}' },
      workingDir: '/srv/${host.name}',
      restart: 'always' as const,
      healthCheck: { type: 'http' as const, url: 'http://${host.address}:8080/health' },
    };
    expect(resolveSpec(spec, facts, 'body/services/0')).toMatchObject({
      command: '/srv/web-1/bin',
      args: ['--id', 'h-42'],
      env: { ADDR: '10.0.0.5' },
      workingDir: '/srv/web-1',
      healthCheck: { url: 'http://10.0.0.5:8080/health' },
    });
    expect(() => resolveSpec({ ...spec, args: ['ok', '${host.zone}'] }, facts, 'body/services/2')).toThrow(
      'body/services/2/args/1 uses unknown variable ${host.zone}',
    );
  });

  it('finds the default route interface in /proc/net/route', () => {
    const table = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
      'eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0',
      'eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    expect(defaultRouteInterface(table)).toBe('eth0');
    expect(defaultRouteInterface(table.split('\n').slice(0, 1).join('\n'))).toBeUndefined();
  });
});
