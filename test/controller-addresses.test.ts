/**
 * Where each controller is reached, as bundles list them: rows of controllers still connected
 * are listed (oldest start first, bounded, never this controller's own address twice), rows of
 * controllers gone are ignored and pruned by the next one that publishes, on both dialects.
 */
import { describe, expect, it } from 'vitest';
import {
  peerWorkerAddresses,
  publishControllerAddress,
  withdrawControllerAddress,
} from '../controller/cluster/controller-addresses.js';
import { openDatabase } from '../controller/db/open-database.js';
import { MAX_BUNDLE_CONTROLLERS } from '../pki/index.js';
import { describeEachDialect } from './dialects.js';

const at = (s: number): string => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

describeEachDialect((d) => {
  describe('controller addresses', () => {
    it('lists the live others oldest first, ignores and prunes the gone, and withdraws on stop', async () => {
      const db = await openDatabase(await d.newDatabase());
      try {
        const live = new Set(['a', 'b', 'c']);
        await publishControllerAddress(db, 'a', { worker: 'ctl-a:8771', syslog: 'ctl-a:6514' }, live, at(1));
        await publishControllerAddress(db, 'gone', { worker: 'ctl-old:8771' }, new Set(['a', 'gone']), at(2));
        await publishControllerAddress(db, 'c', { worker: 'ctl-c:8771' }, new Set(['a', 'c', 'gone']), at(3));
        await publishControllerAddress(db, 'b', { worker: 'ctl-b:8771' }, live, at(4));

        // B's publish pruned the row of the controller that is gone.
        const rows = await db.selectFrom('controller_addresses').select('controller_id').execute();
        expect(rows.map((r) => r.controller_id).sort()).toEqual(['a', 'b', 'c']);
        expect(await peerWorkerAddresses(db, 'b', live, 'ctl-b:8771')).toEqual(['ctl-a:8771', 'ctl-c:8771']);
        // A controller not connected any more is left out even while its row remains.
        expect(await peerWorkerAddresses(db, 'a', new Set(['a', 'b']), 'ctl-a:8771')).toEqual(['ctl-b:8771']);
        // Alone: nothing else to list.
        expect(await peerWorkerAddresses(db, 'a', new Set(['a']), 'ctl-a:8771')).toEqual([]);

        // A restart is a new id: the old row goes with the next publish, the address stays listed once.
        await publishControllerAddress(db, 'c2', { worker: 'ctl-c:8771' }, new Set(['a', 'b', 'c2']), at(5));
        expect(await peerWorkerAddresses(db, 'a', new Set(['a', 'b', 'c2']), 'ctl-a:8771')).toEqual([
          'ctl-b:8771',
          'ctl-c:8771',
        ]);

        await withdrawControllerAddress(db, 'b');
        expect(await peerWorkerAddresses(db, 'a', new Set(['a', 'b', 'c2']), 'ctl-a:8771')).toEqual([
          'ctl-c:8771',
        ]);
      } finally {
        await db.destroy();
      }
    });

    it('lists at most what fits a bundle beside the own address, and skips rows that are not HOST:PORT', async () => {
      const db = await openDatabase(await d.newDatabase());
      try {
        const ids = Array.from(
          { length: MAX_BUNDLE_CONTROLLERS + 3 },
          (_, i) => `p${String(i).padStart(2, '0')}`,
        );
        const live = new Set(['self', ...ids, 'bad']);
        for (const [i, id] of ids.entries()) {
          await publishControllerAddress(db, id, { worker: `10.0.0.${i}:8771` }, live, at(i));
        }
        await publishControllerAddress(db, 'bad', { worker: 'not an address' }, live, at(0));
        const listed = await peerWorkerAddresses(db, 'self', live, '10.0.0.0:8771');
        expect(listed).toHaveLength(MAX_BUNDLE_CONTROLLERS - 1);
        expect(listed).not.toContain('10.0.0.0:8771');
        expect(listed).not.toContain('not an address');
        expect(listed[0]).toBe('10.0.0.1:8771');
      } finally {
        await db.destroy();
      }
    });
  });
});
