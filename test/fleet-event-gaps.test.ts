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
  describe('fleet events appended by two writers at once (two controllers)', () => {
    it('commit in cursor order: the later append waits for the earlier one to end', async () => {
      const target = await dialect.newDatabase();
      const a = await openDatabase(target);
      const b = await openDatabase(target);
      const reader = await openDatabase(target);
      let releaseA: () => void = () => undefined;
      try {
        const sink = createEventSink({ clock: systemClock });
        const event = (op: string) => ({ kind: 'operation.started' as const, operationId: op, data: {} });
        const aHolds = new Promise<void>((resolve) => (releaseA = resolve));
        let aAppended: () => void = () => undefined;
        const aHasCursor = new Promise<void>((resolve) => (aAppended = resolve));
        const first = a.transaction().execute(async (trx) => {
          await sink.append(trx, [event('a')]);
          aAppended();
          await aHolds;
        });
        await aHasCursor;
        let bDone = false;
        const second = b
          .transaction()
          .execute((trx) => sink.append(trx, [event('b')]))
          .then(() => (bDone = true));
        // While A's transaction is open, B's append cannot take a cursor and commit: were it
        // to, a reader would see B's event after A's cursor was skipped for good.
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(bDone).toBe(false);
        const seenMeanwhile = await readPage(reader, 0, 100);
        expect(seenMeanwhile.events).toEqual([]);
        releaseA();
        await Promise.all([first, second]);
        const all = await readPage(a, 0, 100);
        expect(all.events.map((e) => e.operationId)).toEqual(['a', 'b']);
      } finally {
        releaseA();
        await reader.destroy();
        await b.destroy();
        await a.destroy();
      }
    });
  });
});
