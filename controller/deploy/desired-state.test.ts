import { describe, expect, it } from 'vitest';
import type { ServiceSpec } from '../../protocol/service-spec.js';
import {
  hostSets,
  specHashOf,
  type DesiredEntry,
  type FleetSnapshot,
  type HostInfo,
} from './desired-state.js';

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

const spec = (name: string, args: string[] = []): ServiceSpec => ({
  name,
  runtime: 'process',
  command: '/bin/app',
  args,
  env: {},
  restart: 'always',
});

const entry = (hostId: string, s: ServiceSpec): DesiredEntry => ({
  hostId,
  service: s.name,
  spec: s,
  specHash: specHashOf(s),
});

function snapshot(
  desired: DesiredEntry[],
  hostDesired: [string, { generation: number; setHash: string; ackedGeneration: number }][] = [],
  hosts: HostInfo[] = [host('a'), host('b')],
): FleetSnapshot {
  return { hosts: new Map(hosts.map((h) => [h.id, h])), desired, hostDesired: new Map(hostDesired) };
}

describe('hostSets', () => {
  it('gives a first set generation 1, sorted by name', () => {
    const sets = hostSets(snapshot([]), [entry('a', spec('web')), entry('a', spec('api'))], false);
    expect(sets).toHaveLength(1);
    expect(sets[0]).toMatchObject({ generation: 1, changed: true, dropped: [] });
    expect(sets[0]?.services.map((s) => s.name)).toEqual(['api', 'web']);
  });

  it('keeps the generation for the same set (resent only when asked) and bumps it on a change', () => {
    const current = [entry('a', spec('api')), entry('b', spec('web'))];
    const first = hostSets(snapshot([]), current, false);
    const acked = first.map(
      (s): [string, { generation: number; setHash: string; ackedGeneration: number }] => [
        s.host.id,
        { generation: s.generation, setHash: s.setHash, ackedGeneration: s.generation },
      ],
    );
    const snap = snapshot(current, acked);
    expect(hostSets(snap, current, false)).toEqual([]);
    expect(hostSets(snap, current, true).map((s) => [s.host.id, s.generation, s.changed])).toEqual([
      ['a', 1, false],
      ['b', 1, false],
    ]);
    const changed = hostSets(snap, [entry('a', spec('api', ['-v'])), entry('b', spec('web'))], false);
    expect(changed.map((s) => [s.host.id, s.generation, s.changed])).toEqual([['a', 2, true]]);
  });

  it('sends an emptied host an empty set naming what it drops, and resends to hosts that never acknowledged', () => {
    const api = entry('a', spec('api'));
    const web = entry('b', spec('web'));
    const hashOf = (e: DesiredEntry): string => hostSets(snapshot([]), [e], false)[0]?.setHash ?? '';
    const snap = snapshot(
      [api, web],
      [
        ['a', { generation: 3, setHash: hashOf(api), ackedGeneration: 3 }],
        // Same set, but the agent never confirmed generation 5: it goes again, unchanged.
        ['b', { generation: 5, setHash: hashOf(web), ackedGeneration: 4 }],
      ],
    );
    const sets = hostSets(snap, [web], false);
    expect(sets.map((s) => [s.host.id, s.generation, s.services.length, s.dropped, s.changed])).toEqual([
      ['a', 4, 0, ['api'], true],
      ['b', 5, 1, [], false],
    ]);
  });

  it('leaves decommissioned hosts out', () => {
    const snap = snapshot([entry('b', spec('web'))], [], [host('a'), host('b', { decommissioned: true })]);
    const sets = hostSets(snap, [entry('a', spec('web'))], true);
    expect(sets.map((s) => s.host.id)).toEqual(['a']);
  });
});
