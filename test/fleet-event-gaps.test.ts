import { describe, expect, it } from 'vitest';
import { systemClock } from '../controller/clock.js';
import { createEventSink, readPage } from '../controller/events/event-log.js';
import { openDatabase } from '../controller/db/open-database.js';
import { describeEachDialect } from './dialects.js';

/**
 * A cursor no event ever had is no lost event: on PostgreSQL a transaction that appended
 * fleet events and rolled back still used up their identity values, leaving a hole in the
 * cursors. `GET /v1/events` and the stream report `truncated` only for what retention
 * deleted (from the oldest end).
 */
describeEachDialect((dialect) => {
  describe('fleet event cursors with a hole from a rolled-back append', () => {
    it('are not reported truncated; events pruned from the oldest end still are', async () => {
      const db = await openDatabase(await dialect.newDatabase());
      try {
        const sink = createEventSink({ clock: systemClock });
        const event = (op: string) => ({ kind: 'operation.started' as const, operationId: op, data: {} });
        await db.transaction().execute((trx) => sink.append(trx, [event('first')]));
        const rolledBack = db.transaction().execute(async (trx) => {
          await sink.append(trx, [event('rolled-back')]);
          throw new Error('rolled back on purpose');
        });
        await expect(rolledBack).rejects.toThrow('rolled back on purpose');
        await db.transaction().execute((trx) => sink.append(trx, [event('third')]));

        const all = await readPage(db, 0, 100);
        expect(all.events.map((e) => e.operationId)).toEqual(['first', 'third']);
        expect(all.truncated).toBe(false);
        const [first, third] = all.events.map((e) => e.cursor);
        const after = await readPage(db, first ?? 0, 100);
        expect([after.events.map((e) => e.cursor), after.truncated]).toEqual([[third], false]);

        // Retention deletes the oldest: a reader still before it is told.
        await db
          .deleteFrom('fleet_events')
          .where('cursor', '=', first ?? 0)
          .execute();
        const pruned = await readPage(db, 0, 100);
        expect([pruned.events.map((e) => e.cursor), pruned.truncated]).toEqual([[third], true]);
        await db.deleteFrom('fleet_events').execute();
        const none = await readPage(db, third ?? 0, 100);
        expect([none.events, none.truncated]).toEqual([[], false]);
        const gone = await readPage(db, first ?? 0, 100);
        expect([gone.events, gone.truncated]).toEqual([[], true]);
      } finally {
        await db.destroy();
      }
    });
  });
});
