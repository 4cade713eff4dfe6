import { describe, expect, it } from 'vitest';
import {
  instanceNames,
  place,
  serviceOfInstance,
  type CandidateHost,
  type PlaceableService,
  type PlacementResult,
} from './placement.js';

const hosts: CandidateHost[] = [
  { name: 'w1', labels: { zone: 'a', disk: 'ssd' } },
  { name: 'w2', labels: { zone: 'b' } },
  { name: 'w3', labels: { zone: 'a' } },
];
const svc = (
  name: string,
  placement?: PlaceableService['placement'],
  extra: Partial<PlaceableService> = {},
): PlaceableService => ({ name, placement, ...extra });

/** `instance@host` for every-host services (one instance name on many hosts), else `instance`. */
function hostsOf(result: PlacementResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of result.decisions) {
    const key = out[d.instance] === undefined ? d.instance : `${d.instance}@${d.host}`;
    out[key] = d.host;
  }
  return out;
}
const pendingOf = (result: PlacementResult): string[] => result.pending.map((p) => p.instance);
const current = (m: Record<string, string | string[]>) =>
  Object.entries(m).flatMap(([instance, h]) =>
    (Array.isArray(h) ? h : [h]).map((host) => ({ instance, host })),
  );

describe('placement', () => {
  const cases: {
    name: string;
    services: PlaceableService[];
    hosts?: CandidateHost[];
    previous?: Record<string, string | string[]>;
    expected: Record<string, string>;
    pending?: string[];
  }[] = [
    {
      name: 'round robin over all hosts when unconstrained',
      services: [svc('a'), svc('b'), svc('c'), svc('d')],
      expected: { a: 'w1', b: 'w2', c: 'w3', d: 'w1' },
    },
    {
      name: 'label constraint keeps services to matching hosts, alternating among them',
      services: [
        svc('a', { labels: { zone: 'a' } }),
        svc('b', { labels: { zone: 'a' } }),
        svc('c', { labels: { zone: 'a' } }),
      ],
      expected: { a: 'w1', b: 'w3', c: 'w1' },
    },
    {
      name: 'all labels must match',
      services: [svc('a', { labels: { zone: 'a', disk: 'ssd' } })],
      expected: { a: 'w1' },
    },
    {
      name: 'host constraint',
      services: [svc('a', { hosts: ['w2'] }), svc('b', { hosts: ['w2', 'w3'] })],
      expected: { a: 'w2', b: 'w3' },
    },
    {
      name: 'stable: previous hosts are kept even when round robin would choose otherwise',
      services: [svc('a'), svc('b'), svc('c')],
      previous: { a: 'w3', b: 'w3', c: 'w2' },
      expected: { a: 'w3', b: 'w3', c: 'w2' },
    },
    {
      name: 'a service whose host is gone moves to the least-loaded eligible host',
      services: [svc('a'), svc('b'), svc('c')],
      hosts: [hosts[0]!, hosts[1]!],
      previous: { a: 'w3', b: 'w1', c: 'w1' },
      expected: { a: 'w2', b: 'w1', c: 'w1' },
    },
    {
      name: 'a service whose host no longer satisfies its constraint moves',
      services: [svc('a', { labels: { zone: 'b' } })],
      previous: { a: 'w1' },
      expected: { a: 'w2' },
    },
    {
      name: 'count spreads instances over distinct hosts',
      services: [svc('api', undefined, { count: 3 })],
      expected: { 'api#1': 'w1', 'api#2': 'w2', 'api#3': 'w3' },
    },
    {
      name: 'count 3 over 2 hosts: the third instance is pending (spread)',
      services: [svc('api', undefined, { count: 3 })],
      hosts: [hosts[0]!, hosts[1]!],
      expected: { 'api#1': 'w1', 'api#2': 'w2' },
      pending: ['api#3'],
    },
    {
      name: 'count 3 over 2 hosts with spread: false doubles up on the least loaded',
      services: [svc('api', undefined, { count: 3, spread: false })],
      hosts: [hosts[0]!, hosts[1]!],
      expected: { 'api#1': 'w1', 'api#2': 'w2', 'api#3': 'w1' },
    },
    {
      name: 'count keeps instances where they are and fills the gap on a host without one',
      services: [svc('api', undefined, { count: 3 })],
      previous: { 'api#1': 'w3', 'api#2': 'w1' },
      expected: { 'api#1': 'w3', 'api#2': 'w1', 'api#3': 'w2' },
    },
    {
      name: 'spread moves a second instance off a host it shares (previously spread: false)',
      services: [svc('api', undefined, { count: 2 })],
      previous: { 'api#1': 'w1', 'api#2': 'w1' },
      expected: { 'api#1': 'w1', 'api#2': 'w2' },
    },
    {
      name: 'every-host puts one instance on every host that satisfies the constraint',
      services: [svc('agent', { labels: { zone: 'a' } }, { everyHost: true }), svc('x')],
      expected: { agent: 'w1', 'agent@w3': 'w3', x: 'w2' },
    },
    {
      name: 'every-host takes a host that joins, keeping the others',
      services: [svc('agent', undefined, { everyHost: true })],
      previous: { agent: ['w1', 'w2'] },
      expected: { agent: 'w1', 'agent@w2': 'w2', 'agent@w3': 'w3' },
    },
    {
      name: 'a host that holds but does not accept keeps its instances and takes no new ones',
      services: [svc('a'), svc('b'), svc('c')],
      hosts: [{ ...hosts[0]!, accepts: false, holds: true }, hosts[1]!],
      previous: { a: 'w1' },
      expected: { a: 'w1', b: 'w2', c: 'w2' },
    },
    {
      name: 'a lost host (neither holds nor accepts) gives up its instances, every-host too',
      services: [svc('a'), svc('e', undefined, { everyHost: true })],
      hosts: [{ ...hosts[0]!, accepts: false, holds: false }, hosts[1]!],
      previous: { a: 'w1', e: ['w1', 'w2'] },
      expected: { a: 'w2', e: 'w2' },
    },
    {
      name: 'one unplaceable service is pending and the rest are still placed',
      services: [svc('a'), svc('b', { labels: { gpu: 'yes' } }), svc('c', { hosts: ['w9'] }), svc('d')],
      expected: { a: 'w1', d: 'w2' },
      pending: ['b', 'c'],
    },
    {
      name: 'an empty fleet leaves everything pending',
      services: [svc('a'), svc('e', undefined, { everyHost: true })],
      hosts: [],
      expected: {},
      pending: ['a', 'e'],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const result = place(c.services, c.hosts ?? hosts, current(c.previous ?? {}));
      expect(hostsOf(result)).toEqual(c.expected);
      expect(pendingOf(result)).toEqual(c.pending ?? []);
    });
  }

  it('labels each decision kept, placed or moved', () => {
    const result = place(
      [svc('a'), svc('b'), svc('c')],
      [hosts[0]!, hosts[1]!],
      current({ a: 'w1', b: 'w3' }),
    );
    expect(result.decisions.map((d) => [d.instance, d.change, d.previousHost])).toEqual([
      ['a', 'kept', 'w1'],
      ['b', 'moved', 'w3'],
      ['c', 'placed', null],
    ]);
  });

  it('says why an instance is pending', () => {
    const result = place(
      [svc('b', { labels: { gpu: 'yes' } }), svc('api', undefined, { count: 4 })],
      hosts,
      [],
    );
    expect(result.pending).toEqual([
      { instance: 'b', service: 'b', reason: 'no eligible online host for labels gpu=yes' },
      {
        instance: 'api#4',
        service: 'api',
        reason: 'spread: each of the 3 eligible hosts already runs an instance of api',
      },
    ]);
  });

  it('is deterministic for the same input', () => {
    const services = Array.from({ length: 20 }, (_, i) => svc(`s${i}`, undefined, { count: 2 }));
    expect(hostsOf(place(services, hosts, []))).toEqual(hostsOf(place(services, [...hosts].reverse(), [])));
  });

  it('names instances and finds their service', () => {
    expect(instanceNames({ name: 'api' })).toEqual(['api']);
    expect(instanceNames({ name: 'api', count: 2 })).toEqual(['api#1', 'api#2']);
    expect(serviceOfInstance('api#12')).toBe('api');
    expect(serviceOfInstance('api')).toBe('api');
  });
});
