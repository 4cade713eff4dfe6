import { describe, expect, it } from 'vitest';
import { place, type CandidateHost, type PlaceableService } from './placement.js';

const hosts: CandidateHost[] = [
  { name: 'w1', labels: { zone: 'a', disk: 'ssd' } },
  { name: 'w2', labels: { zone: 'b' } },
  { name: 'w3', labels: { zone: 'a' } },
];
const svc = (name: string, placement?: PlaceableService['placement']): PlaceableService => ({
  name,
  placement,
});

function hostsOf(result: ReturnType<typeof place>): Record<string, string> {
  if (!result.ok) throw new Error(JSON.stringify(result.unplaceable));
  return Object.fromEntries(result.decisions.map((d) => [d.service, d.host]));
}

describe('placement', () => {
  const cases: {
    name: string;
    services: PlaceableService[];
    hosts?: CandidateHost[];
    previous?: Record<string, string>;
    expected: Record<string, string>;
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
  ];

  for (const c of cases) {
    it(c.name, () => {
      expect(hostsOf(place(c.services, c.hosts ?? hosts, new Map(Object.entries(c.previous ?? {}))))).toEqual(
        c.expected,
      );
    });
  }

  it('labels each decision kept, placed or moved', () => {
    const result = place(
      [svc('a'), svc('b'), svc('c')],
      [hosts[0]!, hosts[1]!],
      new Map([
        ['a', 'w1'],
        ['b', 'w3'],
      ]),
    );
    expect(result.ok && result.decisions.map((d) => d.change)).toEqual(['kept', 'moved', 'placed']);
  });

  it('places nothing when any service has no eligible host, naming each', () => {
    const result = place(
      [svc('a'), svc('b', { labels: { gpu: 'yes' } }), svc('c', { hosts: ['w9'] })],
      hosts,
      new Map(),
    );
    expect(result.ok).toBe(false);
    expect(!result.ok && result.unplaceable.map((u) => u.service)).toEqual(['b', 'c']);
    expect(!result.ok && result.unplaceable[0]?.reason).toContain('gpu=yes');
  });

  it('places nothing on an empty fleet', () => {
    expect(place([svc('a')], [], new Map()).ok).toBe(false);
  });

  it('is deterministic for the same input', () => {
    const services = Array.from({ length: 20 }, (_, i) => svc(`s${i}`));
    expect(hostsOf(place(services, hosts, new Map()))).toEqual(
      hostsOf(place(services, [...hosts].reverse(), new Map())),
    );
  });
});
