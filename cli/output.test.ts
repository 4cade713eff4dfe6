import { describe, expect, it } from 'vitest';
import { jsonArrayWriter, renderJson, renderTable, tableWriter, type Cell } from './output.js';

const items = [
  { name: 'a', labels: { zone: 'x' }, n: 1 },
  { name: 'b\u001b[31m', nested: [1, { deep: null }], text: 'line\nbreak' },
  { name: 'c', empty: {}, list: [] },
];

describe('streamed output', () => {
  it('a JSON array written in parts is byte for byte renderJson of the whole, escapes included', () => {
    for (const cut of [0, 1, 2, 3]) {
      const w = jsonArrayWriter();
      const text = w.items(items.slice(0, cut)) + w.items([]) + w.items(items.slice(cut)) + w.end();
      expect(text).toBe(renderJson(items));
    }
    const empty = jsonArrayWriter();
    expect(empty.items([]) + empty.end()).toBe(renderJson([]));
  });

  it('a table written in one part is renderTable; later parts keep the first part’s columns', () => {
    const headers = ['name', 'status', 'labels'];
    const rows: Cell[][] = [
      ['host-1', 'online', 'a=b'],
      ['host-2', null, 'c=d'],
    ];
    expect(tableWriter(headers).rows(rows)).toBe(renderTable(headers, rows));
    expect(tableWriter(headers).rows([])).toBe(renderTable(headers, []));
    const w = tableWriter(headers);
    const first = w.rows(rows);
    const later = w.rows([['host-3', 'stale', 'e=f']]);
    expect(first + later).toBe(renderTable(headers, [...rows, ['host-3', 'stale', 'e=f']]));
    // A wider cell later pushes only its own line; the text stays one safe line.
    const wide = w.rows([['host-4\u001b[2J-much-wider-name', 'offline', 'x']]);
    expect(wide).not.toContain('\u001b');
    expect(wide).toMatch(/^host-4\S*-much-wider-name {2}offline {2}x\n$/);
  });
});
