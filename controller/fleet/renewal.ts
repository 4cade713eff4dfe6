import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { CertificateAuthority } from '../../pki/index.js';
import type { RenewRequest, RenewResponse } from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry, PinMatch } from '../pins/pin-registry.js';
import { insertPins, signWorkerCsr } from './worker-identity.js';
import { decodeJsonColumn, StoredNames } from '../db/json-column.js';

export interface Renewal {
  /**
   * Issues a new certificate for the caller's host (the agent renews its own and its
   * updater's). The new certificate is pinned at once; the one the worker holds stays pinned,
   * marked superseded, until the new one is seen in use, so there is no moment when neither
   * works.
   *
   * Safe to retry: when an answer was lost, the worker asks again with the certificate it
   * still holds and gets a new successor. The successors it never received are retired (no
   * connection can be using them), the held one is never retired here, so the connection
   * carrying the request stays open until its answer is written. At most the held certificate
   * and the newest successor stay pinned per role.
   *
   * Throws CORRAL_ERR_FORBIDDEN when the host is (or becomes, before the transaction) decommissioned:
   * no pin is added for it then, in the database or in the registry.
   */
  renew(caller: PinMatch, request: RenewRequest): Promise<RenewResponse>;
}

const refused = (): CorralError =>
  new CorralError(ErrorCode.FORBIDDEN, 'client certificate is not accepted here');

export function createRenewal(deps: {
  db: Kysely<ControllerDatabase>;
  ca: CertificateAuthority;
  pins: MutablePinRegistry;
  audit: AuditLog;
  clock: Clock;
  log: Logger;
}): Renewal {
  const { db, ca, pins, audit, clock, log } = deps;

  return {
    async renew(caller, request) {
      const host = await db
        .selectFrom('hosts')
        .selectAll()
        .where('id', '=', caller.hostId)
        .where('decommissioned_at', 'is', null)
        .executeTakeFirst();
      if (!host) throw refused();
      const subject = {
        id: host.id,
        name: host.name,
        address: host.address,
        sans: decodeJsonColumn(StoredNames, host.sans, { table: 'hosts', column: 'sans', row: host.id }),
      };
      const issued = await signWorkerCsr(ca, request.csrPem, request.role, subject);
      // The certificate the worker holds for this role: for its own role the one on this very
      // connection (whatever the body says); for the updater's, the one the agent names.
      const held = request.role === caller.role ? caller.fingerprint : request.replaces;
      const now = clock.now();
      const outcome = await db.transaction().execute(async (trx) => {
        // The host is checked again inside the transaction, by a write that changes nothing:
        // a decommission that committed since the read above makes it match no row, and one
        // that comes later waits for this transaction (a row lock on PostgreSQL; SQLite has one
        // writer) and then deactivates the pin added here with the others.
        const live = await trx
          .updateTable('hosts')
          .set({ decommissioned_at: null })
          .where('id', '=', host.id)
          .where('decommissioned_at', 'is', null)
          .executeTakeFirst();
        if (live.numUpdatedRows !== 1n) return undefined;
        const current = await trx
          .selectFrom('pins')
          .select(['fingerprint', 'superseded_at'])
          .where('host_id', '=', host.id)
          .where('role', '=', request.role)
          .where('active', '=', 1)
          .execute();
        const keep = current.find((p) => p.fingerprint === held);
        // Without a known held certificate (an agent that does not say), the newest one is
        // taken to be held, as before: older superseded ones go.
        const retired = keep
          ? current.filter((p) => p !== keep).map((p) => p.fingerprint)
          : current.filter((p) => p.superseded_at !== null).map((p) => p.fingerprint);
        const superseded = keep
          ? keep.superseded_at === null
            ? [keep.fingerprint]
            : []
          : current.filter((p) => p.superseded_at === null).map((p) => p.fingerprint);
        if (retired.length > 0) {
          await trx
            .updateTable('pins')
            .set({ active: 0, retired_at: isoAt(now) })
            .where('fingerprint', 'in', retired)
            .execute();
        }
        if (superseded.length > 0) {
          await trx
            .updateTable('pins')
            .set({ superseded_at: isoAt(now) })
            .where('fingerprint', 'in', superseded)
            .execute();
        }
        const added = await insertPins(trx, subject, [issued], now);
        await audit.append(
          {
            actor: `host:${host.name}`,
            action: 'renew',
            target: host.name,
            details: {
              hostId: host.id,
              role: request.role,
              fingerprint: issued.fingerprint,
              replaces: keep ? [keep.fingerprint] : superseded,
              retired,
            },
          },
          trx,
        );
        return { retired, superseded, added };
      });
      if (!outcome) throw refused();
      pins.add(outcome.added);
      pins.supersede(outcome.superseded);
      pins.retire(outcome.retired);
      log.info(
        {
          hostId: host.id,
          role: request.role,
          fingerprint: issued.fingerprint,
          retired: outcome.retired.length,
        },
        'certificate renewed',
      );
      return {
        certPem: issued.certPem,
        fingerprint: issued.fingerprint,
        notAfter: issued.notAfter.toISOString(),
      };
    },
  };
}
