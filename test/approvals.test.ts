/**
 * Approvals over a real controller configured with `approvals: { decommission: 1 }`: a
 * decommission request becomes a pending approval (202, the same one when asked again), its
 * requester cannot approve it, an unapproved one expires, and an approved one runs as the
 * requester's decommission, the audit naming both operators.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../protocol/admin-audit.js';
import type { ApprovalPending, ApprovalView } from '../protocol/approvals.js';
import type { OperatorCreateResponse } from '../protocol/operators.js';
import { startController, type TestController } from './controller-fixture.js';
import { describeEachDialect } from './dialects.js';

describeEachDialect((dialect) => {
  const TTL_MS = 60_000;
  let t: TestController;
  let skewMs = 0;
  let alice: string;
  let bob: string;
  type ErrorBody = { error: { code: string; message: string } };

  beforeAll(async () => {
    t = await startController({
      ...(dialect.name === 'postgres' && { database: await dialect.newDatabase() }),
      clock: { now: () => Date.now() + skewMs },
      decommissionWaitMs: 500,
      approvals: { policy: { decommission: 1 }, ttlMs: TTL_MS },
    });
    const make = async (name: string, scopes: string[]) => {
      const res = await t.admin<OperatorCreateResponse>('POST', '/v1/operators', { name, scopes });
      expect(res.status).toBe(200);
      return res.body.token ?? '';
    };
    alice = await make('alice', ['read', 'decommission', 'approve']);
    bob = await make('bob', ['read', 'approve']);
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  const decommission = (name: string, token: string) =>
    t.admin<ApprovalPending & ErrorBody>('POST', `/v1/hosts/${name}/decommission`, undefined, token);

  describe('a decommission that needs one approval', () => {
    it('waits as a pending request, the same one when asked again, and its requester cannot approve it', async () => {
      await t.enroll('web-1');
      const first = await decommission('web-1', alice);
      expect(first.status).toBe(202);
      expect(first.body.approval).toMatchObject({
        action: 'decommission',
        target: 'web-1',
        state: 'pending',
        requester: 'alice',
        required: 1,
      });
      expect(first.body.approveWith).toContain(first.body.approval.id);
      const again = await decommission('web-1', alice);
      expect(again.body.approval.id).toBe(first.body.approval.id);
      const host = await t.admin<{ host: { status: string } }>('GET', '/v1/hosts/web-1');
      expect(host.body.host.status).toBe('pending');

      const self = await t.admin<ErrorBody>(
        'POST',
        `/v1/approvals/${first.body.approval.id}/approve`,
        undefined,
        alice,
      );
      expect(self.status).toBe(403);
      expect(self.body.error.message).toContain('cannot approve');

      const approved = await t.admin<ApprovalView>(
        'POST',
        `/v1/approvals/${first.body.approval.id}/approve`,
        undefined,
        bob,
      );
      expect(approved.status).toBe(200);
      expect(approved.body).toMatchObject({ state: 'completed', approvers: ['bob'] });
      expect((await t.admin<{ host: { status: string } }>('GET', '/v1/hosts/web-1')).body.host.status).toBe(
        'decommissioned',
      );

      const { body } = await t.admin<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=1000');
      const about = (target: string) =>
        body.entries.filter((e) => e.target === target).map((e) => [e.actor, e.action]);
      expect(about(first.body.approval.id)).toEqual([
        ['alice', 'approval-requested'],
        ['bob', 'approval-approved'],
        ['alice', 'approval-running'],
        ['alice', 'approval-completed'],
      ]);
      expect(about('web-1').filter(([, action]) => action === 'decommission')).toEqual([
        ['alice', 'decommission'],
      ]);
      // The fleet event stream told of the request and of its decision.
      const events = await t.admin<{ events: { kind: string; data: Record<string, unknown> }[] }>(
        'GET',
        '/v1/events?limit=1000',
      );
      const told = events.body.events
        .filter((e) => e.kind.startsWith('approval.') && e.data.approval === first.body.approval.id)
        .map((e) => [e.kind, e.data.state ?? null, e.data.by ?? e.data.requester]);
      expect(told).toEqual([
        ['approval.pending', null, 'alice'],
        ['approval.decided', 'approved', 'bob'],
      ]);
    }, 30_000);

    it('expires when nobody approves it in time, and can no longer be approved', async () => {
      await t.enroll('web-2');
      const asked = await decommission('web-2', alice);
      expect(asked.status).toBe(202);
      skewMs = TTL_MS + 1_000;
      try {
        const late = await t.admin<ApprovalView>('GET', `/v1/approvals/${asked.body.approval.id}`);
        expect(late.body.state).toBe('expired');
        const approve = await t.admin<ErrorBody>(
          'POST',
          `/v1/approvals/${asked.body.approval.id}/approve`,
          undefined,
          bob,
        );
        expect(approve.status).toBe(409);
        expect((await t.admin<{ host: { status: string } }>('GET', '/v1/hosts/web-2')).body.host.status).toBe(
          'pending',
        );
        // A new request after the expiry is a new one.
        const anew = await decommission('web-2', alice);
        expect(anew.body.approval.id).not.toBe(asked.body.approval.id);
        const cancelled = await t.admin<ApprovalView>(
          'POST',
          `/v1/approvals/${anew.body.approval.id}/cancel`,
          undefined,
          alice,
        );
        expect(cancelled.body.state).toBe('cancelled');
        const events = await t.admin<{ events: { kind: string; data: Record<string, unknown> }[] }>(
          'GET',
          '/v1/events?limit=1000',
        );
        const decided = (id: string) =>
          events.body.events
            .filter((e) => e.kind === 'approval.decided' && e.data.approval === id)
            .map((e) => e.data.state);
        expect(decided(asked.body.approval.id)).toEqual(['expired']);
        expect(decided(anew.body.approval.id)).toEqual(['cancelled']);
      } finally {
        skewMs = 0;
      }
    });
  });
});
