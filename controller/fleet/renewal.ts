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

export interface Renewal {
  /**
   * Issues a new certificate for the caller's host (the agent renews its own and its
   * updater's). The new certificate is pinned at once; the one it replaces stays pinned,
   * marked superseded, until the new one is seen in use, so there is no moment when neither
   * works. At most one predecessor per role is kept.
   */
  renew(caller: PinMatch, request: RenewRequest): Promise<RenewResponse>;
}

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
      if (!host) throw new CorralError(ErrorCode.FORBIDDEN, 'client certificate is not accepted here');
      const subject = {
        id: host.id,
        name: host.name,
        address: host.address,
        sans: JSON.parse(host.sans) as string[],
      };
      const issued = await signWorkerCsr(ca, request.csrPem, request.role, subject);
      const now = clock.now();
      const { retired, superseded, added } = await db.transaction().execute(async (trx) => {
        const current = await trx
          .selectFrom('pins')
          .select(['fingerprint', 'superseded_at'])
          .where('host_id', '=', host.id)
          .where('role', '=', request.role)
          .where('active', '=', 1)
          .execute();
        const retired = current.filter((p) => p.superseded_at !== null).map((p) => p.fingerprint);
        const superseded = current.filter((p) => p.superseded_at === null).map((p) => p.fingerprint);
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
              replaces: superseded,
            },
          },
          trx,
        );
        return { retired, superseded, added };
      });
      pins.add(added);
      pins.supersede(superseded);
      pins.retire(retired);
      log.info(
        { hostId: host.id, role: request.role, fingerprint: issued.fingerprint },
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
