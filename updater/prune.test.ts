import { describe, expect, it } from 'vitest';
import type { InstalledRelease } from '../protocol/index.js';
import { releasesToKeep } from './prune.js';

const at = (version: string, minute: number): InstalledRelease => ({
  version,
  sha256: null,
  installedAt: new Date(Date.UTC(2025, 0, 1, 0, minute)).toISOString(),
});

const installed = [at('1.0.0', 1), at('2.0.0', 2), at('3.0.0', 3), at('4.0.0', 4)];

describe('releasesToKeep', () => {
  const cases: {
    name: string;
    current: string | null;
    previous: string | null;
    keep: number;
    want: string[];
  }[] = [
    {
      name: 'newest first, current and previous included',
      current: '4.0.0',
      previous: '3.0.0',
      keep: 3,
      want: ['2.0.0', '3.0.0', '4.0.0'],
    },
    {
      name: 'keep 1 still keeps current and previous',
      current: '4.0.0',
      previous: '3.0.0',
      keep: 1,
      want: ['3.0.0', '4.0.0'],
    },
    {
      name: 'keep 1 keeps an old previous after a rollback',
      current: '2.0.0',
      previous: '4.0.0',
      keep: 1,
      want: ['2.0.0', '4.0.0'],
    },
    {
      name: 'an old previous beats newer releases',
      current: '4.0.0',
      previous: '1.0.0',
      keep: 2,
      want: ['1.0.0', '4.0.0'],
    },
    {
      name: 'a previous missing from the list is kept anyway',
      current: '4.0.0',
      previous: '0.9.0',
      keep: 2,
      want: ['0.9.0', '4.0.0'],
    },
    {
      name: 'no current (first install rolled back): previous and the newest',
      current: null,
      previous: '2.0.0',
      keep: 2,
      want: ['2.0.0', '4.0.0'],
    },
    {
      name: 'previous equal to current counts once',
      current: '4.0.0',
      previous: '4.0.0',
      keep: 2,
      want: ['3.0.0', '4.0.0'],
    },
    {
      name: 'keep 0 is never below current and previous',
      current: '3.0.0',
      previous: '1.0.0',
      keep: 0,
      want: ['1.0.0', '3.0.0'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect([...releasesToKeep(installed, c.current, c.previous, c.keep)].sort()).toEqual(c.want);
    });
  }
});
