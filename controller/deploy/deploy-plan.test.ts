import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../protocol/errors.js';
import { planDeploy } from './deploy-plan.js';
import { specHashOf, type FleetSnapshot, type HostInfo } from './desired-state.js';

const host = (id: string, extra: Partial<HostInfo> = {}): HostInfo => ({
  id,
  name: `h-${id}`,
  address: '127.0.0.1',
  agentPort: 8765,
  labels: {},
  status: 'online',
  decommissioned: false,
  ...extra,
});

function snap(hosts: HostInfo[], desired: [hostId: string, service: string][] = []): FleetSnapshot {
  return {
    hosts: new Map(hosts.map((h) => [h.id, h])),
    desired: desired.map(([hostId, service]) => {
      const spec = {
        name: service,
        runtime: 'process' as const,
        command: 'x',
        args: [],
        env: {},
        restart: 'always' as const,
      };
      return { hostId, service, spec, specHash: specHashOf(spec) };
    }),
    hostDesired: new Map(),
  };
}

describe('planDeploy', () => {
  it('refuses when no host is online, saying so', () => {
    expect(() =>
      planDeploy(snap([host('a', { status: 'stale' }), host('b', { status: 'pending' })]), {
        services: [{ name: 'api', command: 'x' }],
      }),
    ).toThrow(
      expect.objectContaining({ code: ErrorCode.PLACEMENT, message: expect.stringContaining('none online') }),
    );
  });

  it('keeps, places, moves off decommissioned and ineligible hosts, and lists what the spec dropped', () => {
    const s = snap(
      [host('a'), host('b', { status: 'offline' }), host('c', { decommissioned: true }), host('d')],
      [
        ['a', 'keep'],
        ['b', 'off'],
        ['c', 'gone'],
        ['d', 'dropped'],
      ],
    );
    const { plan, next, removed } = planDeploy(s, {
      services: ['keep', 'off', 'gone', 'new'].map((name) => ({ name, command: 'x' })),
    });
    const by = Object.fromEntries(plan.map((p) => [p.service, p]));
    expect(by.keep).toMatchObject({ host: 'h-a', change: 'kept' });
    expect(by.off).toMatchObject({ change: 'moved', previousHost: 'h-b' });
    expect(by.gone).toMatchObject({ change: 'moved', previousHost: 'h-c' });
    expect(by.new).toMatchObject({ change: 'placed', previousHost: null });
    expect(plan.every((p) => p.host === 'h-a' || p.host === 'h-d')).toBe(true);
    expect(removed).toEqual([{ service: 'dropped', host: 'h-d' }]);
    expect(next.map((e) => [e.service, e.spec.restart, e.spec.args])).toEqual([
      ['keep', 'on-failure', []],
      ['off', 'on-failure', []],
      ['gone', 'on-failure', []],
      ['new', 'on-failure', []],
    ]);
  });
});
