import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type ControllerDb } from '../controller/db/open-database.js';
import { describeEachDialect } from './dialects.js';
import { AUDIT_GENESIS_HASH, auditHash, createAuditLog } from '../controller/audit/audit-log.js';
import { canonicalJson } from '../kit/canonical-json.js';

describeEachDialect((dialect) => {
  let target: string;
  let db: ControllerDb;
  beforeEach(async () => {
    target = await dialect.newDatabase();
    db = await openDatabase(target);
  });
  afterEach(async () => {
    await db.destroy();
  });

  describe('audit log', () => {
    it('chains entries and verifies them', async () => {
      let t = 1_700_000_000_000;
      const audit = createAuditLog({ db, clock: { now: () => (t += 1000) } });
      const first = await audit.append({
        actor: 'admin',
        action: 'enroll',
        target: 'web-1',
        details: { b: 1, a: [2] },
      });
      const second = await audit.append({ actor: 'admin', action: 'decommission', target: 'web-1' });
      expect(first.prevHash).toBe(AUDIT_GENESIS_HASH);
      expect(second.prevHash).toBe(first.hash);
      expect(auditHash(first)).toBe(first.hash);
      expect(await audit.list()).toEqual([first, second]);
      expect(await audit.list({ after: 1 })).toEqual([second]);
      expect(await audit.verify()).toEqual({
        ok: true,
        checked: 2,
        headHash: second.hash,
        firstBroken: null,
      });
    });

    it('commits with the audited change or not at all', async () => {
      const audit = createAuditLog({ db, clock: { now: () => 0 } });
      await expect(
        db.transaction().execute(async (trx) => {
          await audit.append({ actor: 'a', action: 'x', target: 't' }, trx);
          throw new Error('change failed');
        }),
      ).rejects.toThrow('change failed');
      expect(await audit.list()).toEqual([]);
    });

    it('refuses to change or delete an entry', async () => {
      const audit = createAuditLog({ db, clock: { now: () => 0 } });
      await audit.append({ actor: 'a', action: 'x', target: 't' });
      await expect(sql`UPDATE audit SET actor = 'b'`.execute(db)).rejects.toThrow(/audit log is append-only/);
      await expect(sql`DELETE FROM audit`.execute(db)).rejects.toThrow(/audit log is append-only/);
      if (dialect.name === 'postgres') {
        await expect(sql`TRUNCATE audit`.execute(db)).rejects.toThrow(/audit log is append-only/);
      }
      expect(await audit.verify()).toMatchObject({ ok: true, checked: 1 });
    });

    it('keeps seq contiguous under concurrent appends', async () => {
      const audit = createAuditLog({ db, clock: { now: () => 0 } });
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => audit.append({ actor: 'a', action: 'x', target: `t${i}` })),
      );
      const v = await audit.verify();
      expect(v).toMatchObject({ ok: true, checked: 30 });
    });

    it('keeps the chain whole when two processes append at once (separate connections)', async () => {
      // Two databases opened on one target are what two controllers are: on PostgreSQL their
      // appends interleave unless the chain's lock serializes them.
      const other = await openDatabase(target, { migrate: false });
      try {
        const mine = createAuditLog({ db, clock: { now: () => 0 } });
        const theirs = createAuditLog({ db: other, clock: { now: () => 0 } });
        await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            (i % 2 === 0 ? mine : theirs).append({ actor: 'a', action: 'x', target: `t${i}` }),
          ),
        );
        expect(await mine.verify()).toMatchObject({ ok: true, checked: 40 });
      } finally {
        await other.destroy();
      }
    });

    it('names the first broken entry after edits made with the triggers dropped', async () => {
      const audit = createAuditLog({ db, clock: { now: () => 0 } });
      for (let i = 1; i <= 5; i++)
        await audit.append({ actor: 'a', action: 'x', target: `t${i}`, details: { i } });
      if (dialect.name === 'sqlite') {
        await sql`DROP TRIGGER audit_no_update`.execute(db);
        await sql`DROP TRIGGER audit_no_delete`.execute(db);
      } else {
        await sql`DROP TRIGGER audit_no_change ON audit`.execute(db);
      }

      await sql`UPDATE audit SET details = '{"i":40}' WHERE seq = 4`.execute(db);
      expect((await audit.verify()).firstBroken).toMatchObject({ seq: 4, reason: 'hash-mismatch' });
      await sql`UPDATE audit SET actor = 'b' WHERE seq = 2`.execute(db);
      expect(await audit.verify()).toMatchObject({
        ok: false,
        checked: 1,
        firstBroken: { seq: 2, reason: 'hash-mismatch' },
      });
      await sql`DELETE FROM audit WHERE seq = 2`.execute(db);
      expect((await audit.verify()).firstBroken).toMatchObject({ seq: 2, reason: 'sequence-gap' });
      // Rewriting a row with a correct hash of its own still breaks the link to the next one.
      const row = (await audit.list({ after: 2, limit: 1 }))[0]!;
      const forged = {
        ...row,
        seq: 2,
        target: 'forged',
        prevHash: (await audit.list({ limit: 1 }))[0]!.hash,
      };
      await db
        .insertInto('audit')
        .values({
          seq: 2,
          time: forged.time,
          actor: forged.actor,
          action: forged.action,
          target: forged.target,
          details: JSON.stringify(forged.details),
          prev_hash: forged.prevHash,
          hash: auditHash(forged),
        })
        .execute();
      expect((await audit.verify()).firstBroken).toMatchObject({ seq: 3, reason: 'chain-broken' });
    });

    it('canonical JSON sorts keys at every depth', () => {
      expect(canonicalJson({ b: { d: 1, c: [{ f: 1, e: 2 }] }, a: null })).toBe(
        '{"a":null,"b":{"c":[{"e":2,"f":1}],"d":1}}',
      );
      expect(() => canonicalJson({ n: Number.NaN })).toThrow();
    });
  });
});
