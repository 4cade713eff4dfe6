import { describe, expect, it } from 'vitest';
import type { ServiceState } from '../../protocol/heartbeat.js';
import { plan, type CurrentService, type DesiredService, type Step } from './plan.js';

const spec = (name: string, hash = `${name}-v1`): DesiredService => ({
  spec: { name, runtime: 'process', command: '/bin/true', args: [], env: {}, restart: 'always' },
  specHash: hash,
});
const cur = (
  name: string,
  state: ServiceState = 'running',
  hash = `${name}-v1`,
  generation = 1,
): CurrentService => ({
  name,
  specHash: hash,
  state,
  generation,
});
const brief = (steps: Step[]) => steps.map((s) => `${s.kind} ${s.name}`);

interface Case {
  readonly name: string;
  readonly current: CurrentService[];
  readonly desired: DesiredService[];
  readonly generation?: number;
  readonly steps: string[];
}

const CASES: Case[] = [
  { name: 'nothing to nothing', current: [], desired: [], steps: [] },
  {
    name: 'fresh host starts everything, sorted',
    current: [],
    desired: [spec('b'), spec('a')],
    steps: ['start a', 'start b'],
  },
  {
    name: 'identical set does nothing',
    current: [cur('a'), cur('b')],
    desired: [spec('a'), spec('b')],
    steps: [],
  },
  {
    name: 'removed service is removed',
    current: [cur('a'), cur('b')],
    desired: [spec('a')],
    steps: ['remove b'],
  },
  {
    name: 'empty desired removes all',
    current: [cur('a'), cur('b', 'failed')],
    desired: [],
    steps: ['remove a', 'remove b'],
  },
  {
    name: 'changed spec is replaced',
    current: [cur('a')],
    desired: [spec('a', 'a-v2')],
    steps: ['replace a'],
  },
  {
    name: 'order: remove, replace, start',
    current: [cur('old'), cur('mid')],
    desired: [spec('new'), spec('mid', 'mid-v2')],
    steps: ['remove old', 'replace mid', 'start new'],
  },
  {
    name: 'failed service, same spec, newer generation: start again',
    current: [cur('a', 'failed')],
    desired: [spec('a')],
    generation: 2,
    steps: ['start a'],
  },
  {
    name: 'failed service, same generation: left alone',
    current: [cur('a', 'failed')],
    desired: [spec('a')],
    generation: 1,
    steps: [],
  },
  {
    name: 'stopped service, newer generation: start again',
    current: [cur('a', 'stopped')],
    desired: [spec('a')],
    generation: 3,
    steps: ['start a'],
  },
  {
    name: 'restarting service is not touched',
    current: [cur('a', 'restarting')],
    desired: [spec('a')],
    generation: 3,
    steps: [],
  },
  {
    name: 'degraded service with same spec is not touched',
    current: [cur('a', 'degraded')],
    desired: [spec('a')],
    generation: 3,
    steps: [],
  },
  {
    name: 'failed service with a new spec is replaced',
    current: [cur('a', 'failed')],
    desired: [spec('a', 'a-v2')],
    steps: ['replace a'],
  },
];

describe('plan(current, desired)', () => {
  for (const c of CASES) {
    it(c.name, () => {
      expect(brief(plan(c.current, { generation: c.generation ?? 1, services: c.desired }))).toEqual(c.steps);
    });
  }

  it('is pure: the same input gives the same steps and nothing is mutated', () => {
    const current = Object.freeze([cur('a'), cur('b')]);
    const desired = { generation: 2, services: Object.freeze([spec('b', 'b-v2'), spec('c')]) };
    expect(plan(current, desired)).toEqual(plan(current, desired));
  });
});
