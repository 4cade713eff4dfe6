import { describe, expect, it } from 'vitest';
import type { DeploymentService } from '../../protocol/deployment.js';
import { ErrorCode } from '../../protocol/errors.js';
import { planDeploy } from './deploy-plan.js';
import { isLost, specHashOf, type FleetSnapshot, type HostInfo } from './desired-state.js';

const host = (id: string, extra: Partial<HostInfo> = {}): HostInfo => ({
  id,
  name: `h-${id}`,
  address: '127.0.0.1',
  agentPort: 8765,
  labels: {},
  status: 'online',
  decommissioned: false,
  lost: false,
  eligible: true,
  drainDeadlineMs: null,
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
const svcs = (...names: string[]): DeploymentService[] => names.map((name) => ({ name, command: 'x' }));
const scheduler = { mode: 'scheduler', refusePending: false } as const;

describe('planDeploy', () => {
  it('refuses when no host is online, saying so', () => {
    expect(() =>
      planDeploy(snap([host('a', { status: 'stale' }), host('b', { status: 'pending' })]), svcs('api')),
    ).toThrow(
      expect.objectContaining({ code: ErrorCode.PLACEMENT, message: expect.stringContaining('none online') }),
    );
  });

  it('keeps, places, moves off decommissioned and ineligible hosts, and lists what the spec dropped', () => {
    const s = snap(
      [
        host('a'),
        host('b', { status: 'offline' }),
        host('c', { decommissioned: true, lost: true }),
        host('d'),
      ],
      [
        ['a', 'keep'],
        ['b', 'off'],
        ['c', 'gone'],
        ['d', 'dropped'],
      ],
    );
    const { plan, next, removed } = planDeploy(s, svcs('keep', 'off', 'gone', 'new'));
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

  it('refuses a spec with an unplaceable instance whole, naming it, unless pending is allowed', () => {
    const s = snap([host('a'), host('b')]);
    const spec: DeploymentService[] = [
      { name: 'api', command: 'x', count: 3 },
      { name: 'gpu', command: 'x', placement: { labels: { gpu: 'yes' } } },
      { name: 'web', command: 'x' },
    ];
    expect(() => planDeploy(s, spec)).toThrow(
      expect.objectContaining({
        code: ErrorCode.PLACEMENT,
        message: expect.stringMatching(/cannot place 2 of 5 instances; nothing was changed.*api#3.*gpu/),
      }),
    );
    const allowed = planDeploy(s, spec, { mode: 'operator', refusePending: false });
    expect(allowed.pending.map((p) => p.service)).toEqual(['api#3', 'gpu']);
    expect(allowed.next.map((e) => [e.service, e.spec.name])).toEqual([
      ['api#1', 'api#1'],
      ['api#2', 'api#2'],
      ['web', 'web'],
    ]);
  });

  it('says per instance which fields a new spec changes (env keys, never values) and whether it restarts', () => {
    const running = snap(
      [host('a'), host('b')],
      [
        ['a', 'same'],
        ['a', 'edited'],
      ],
    );
    const { plan } = planDeploy(running, [
      { name: 'same', command: 'x', restart: 'always' },
      { name: 'edited', command: 'y', args: ['--fast'], env: { TOKEN: 'hunter2' }, restart: 'always' },
      { name: 'fresh', command: 'x', restart: 'always' },
    ]);
    const by = Object.fromEntries(plan.map((p) => [p.service, p]));
    expect(by.same).toMatchObject({ change: 'kept', changed: [], restarts: false });
    expect(by.edited).toMatchObject({
      change: 'kept',
      changed: ['args', 'command', 'env +TOKEN'],
      restarts: true,
    });
    expect(by.fresh).toMatchObject({ change: 'placed', changed: [], restarts: false });
    expect(JSON.stringify(plan)).not.toContain('hunter2');
  });

  it('every-host: one instance per host under the plain name, and a new host gets one', () => {
    const spec: DeploymentService[] = [{ name: 'node-exp', command: 'x', placement: 'every-host' }];
    const first = planDeploy(snap([host('a'), host('b')]), spec);
    expect(first.plan.map((p) => [p.service, p.host, p.change])).toEqual([
      ['node-exp', 'h-a', 'placed'],
      ['node-exp', 'h-b', 'placed'],
    ]);
    const joined = planDeploy(
      snap(
        [host('a'), host('b'), host('c')],
        [
          ['a', 'node-exp'],
          ['b', 'node-exp'],
        ],
      ),
      spec,
      scheduler,
    );
    expect(joined.plan.map((p) => [p.host, p.change])).toEqual([
      ['h-a', 'kept'],
      ['h-b', 'kept'],
      ['h-c', 'placed'],
    ]);
  });

  it('scheduler: an offline host keeps its instances until it is lost, then they move', () => {
    const desired: [string, string][] = [
      ['a', 's1'],
      ['b', 's2'],
    ];
    const away = planDeploy(
      snap([host('a'), host('b', { status: 'offline' })], desired),
      svcs('s1', 's2'),
      scheduler,
    );
    expect(away.plan.map((p) => [p.service, p.host, p.change])).toEqual([
      ['s1', 'h-a', 'kept'],
      ['s2', 'h-b', 'kept'],
    ]);
    const lost = planDeploy(
      snap([host('a'), host('b', { status: 'offline', lost: true })], desired),
      svcs('s1', 's2'),
      scheduler,
    );
    expect(lost.plan.map((p) => [p.service, p.host, p.change, p.previousHost])).toEqual([
      ['s1', 'h-a', 'kept', 'h-a'],
      ['s2', 'h-a', 'moved', 'h-b'],
    ]);
    expect(lost.removed).toEqual([]);
  });

  it('scheduler: services it does not manage stay as they are', () => {
    const s = snap([host('a')], [['a', 'legacy']]);
    const planned = planDeploy(s, svcs('s1'), scheduler);
    expect(planned.next.map((e) => e.service).sort()).toEqual(['legacy', 's1']);
    expect(planned.removed).toEqual([]);
  });

  it('scheduler: a count lowered removes the surplus instances', () => {
    const s = snap(
      [host('a'), host('b')],
      [
        ['a', 'api#1'],
        ['b', 'api#2'],
      ],
    );
    const planned = planDeploy(s, [{ name: 'api', command: 'x', count: 1 }], scheduler);
    expect(planned.plan.map((p) => p.service)).toEqual(['api#1']);
    expect(planned.removed).toEqual([{ service: 'api#2', host: 'h-b' }]);
  });
});

describe('isLost', () => {
  const live = { nowMs: 100_000, intervalMs: 1_000 };
  const cases: [string, number | null, boolean, number | null, boolean][] = [
    ['decommissioned is lost at once', 99_999, true, null, true],
    ['never seen is not lost', null, false, 1_000, false],
    ['reschedule off: never lost while enrolled', 0, false, null, false],
    ['offline (3 intervals) but within the delay', 100_000 - 3_000 - 4_999, false, 5_000, false],
    ['offline for the whole delay', 100_000 - 3_000 - 5_000, false, 5_000, true],
  ];
  for (const [name, seen, decommissioned, after, expected] of cases) {
    it(name, () => expect(isLost(seen, decommissioned, live, after)).toBe(expected));
  }
});
