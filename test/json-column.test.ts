import { describe, expect, it } from 'vitest';
import { describeEachDialect } from './dialects.js';
import { Labels } from '../protocol/common.js';
import { isCorralError } from '../protocol/errors.js';
import { ControllerErrorCode } from '../controller/errors.js';
import { listHostViews } from '../controller/fleet/host-store.js';
import { decodeJsonColumn } from '../controller/db/json-column.js';
import { openDatabase } from '../controller/db/open-database.js';

const host = (id: string, name: string, labels: string, metrics: string | null = null) => ({
  id,
  name,
  address: '10.0.0.1',
  agent_port: 8765,
  updater_port: 8766,
  sans: '[]',
  labels,
  enrolled_at: '2024-01-01T00:00:00.000Z',
  enrolled_via: 'bundle',
  last_seen: null,
  agent_version: null,
  generation: 0,
  metrics,
  decommissioned_at: null,
});

const live = { nowMs: Date.parse('2024-01-02T00:00:00Z'), intervalMs: 30_000 };

describeEachDialect((dialect) => {
  describe('JSON columns decoded with their schemas', () => {
    it('reads rows Corral wrote', async () => {
      const db = await openDatabase(await dialect.newDatabase());
      try {
        await db
          .insertInto('hosts')
          .values(host('h-ok', 'web-1', '{"tier":"web"}'))
          .execute();
        const views = await listHostViews(db, live);
        expect(views.map((v) => [v.name, v.labels])).toEqual([['web-1', { tier: 'web' }]]);
      } finally {
        await db.destroy();
      }
    });

    it.each([
      ['text that is not JSON', '{"tier":', /hosts row "h-bad", column labels: not valid JSON/],
      ['JSON of the wrong shape', '["web"]', /hosts row "h-bad", column labels: \/: /],
      ['a label value that is not a string', '{"tier":7}', /hosts row "h-bad", column labels: \/tier: /],
    ])(
      'refuses a row holding %s with CORRAL_ERR_ROW_DAMAGED naming table, row and column',
      async (_what, labels, message) => {
        const db = await openDatabase(await dialect.newDatabase());
        try {
          await db
            .insertInto('hosts')
            .values(host('h-bad', 'web-2', labels))
            .execute();
          const failure = await listHostViews(db, live).catch((e: unknown) => e);
          expect(isCorralError(failure, ControllerErrorCode.ROW_DAMAGED)).toBe(true);
          expect((failure as Error).message).toMatch(message);
        } finally {
          await db.destroy();
        }
      },
    );

    it('names a metrics column that fails its schema', async () => {
      const db = await openDatabase(await dialect.newDatabase());
      try {
        await db
          .insertInto('hosts')
          .values(host('h-m', 'web-3', '{}', '{"load1":"high"}'))
          .execute();
        await expect(listHostViews(db, live)).rejects.toThrow(/hosts row "h-m", column metrics: /);
      } finally {
        await db.destroy();
      }
    });

    it('returns the decoded value typed by the schema', () => {
      const at = { table: 'join_tokens', column: 'labels', row: 't1' };
      expect(decodeJsonColumn(Labels, '{"a":"b"}', at)).toEqual({ a: 'b' });
      expect(() => decodeJsonColumn(Labels, '{"a":["b"]}', at)).toThrow(
        /join_tokens row "t1", column labels/,
      );
    });
  });
});
