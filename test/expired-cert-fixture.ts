import type { CertificateAuthority } from '../pki/index.js';
import type { ControllerDb } from '../controller/index.js';

export interface MintedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly fingerprint: string;
  readonly notAfter: Date;
}

/**
 * Test-only: an agent certificate for `hostId` signed by the controller's own CA with its
 * validity entirely in the past (the way a worker's certificate looks after it was switched
 * off past its expiry), pinned in the controller's database in place of the host's agent pin.
 * The controller must (re)start on that database to load the pin.
 */
export async function pinExpiredAgentCertificate(
  db: ControllerDb,
  ca: CertificateAuthority,
  host: { readonly id: string; readonly name: string },
  expiredAgoMs = 3_600_000,
): Promise<MintedCertificate> {
  const now = Date.now();
  const issued = await ca.issue({
    role: 'agent',
    hostId: host.id,
    commonName: `${host.name}-agent`,
    ipAddresses: ['127.0.0.1'],
    notBefore: new Date(now - expiredAgoMs - 90 * 86_400_000),
    notAfter: new Date(now - expiredAgoMs),
  });
  const nowIso = new Date(now).toISOString();
  await db.transaction().execute(async (trx) => {
    await trx
      .updateTable('pins')
      .set({ active: 0, retired_at: nowIso })
      .where('host_id', '=', host.id)
      .where('role', '=', 'agent')
      .execute();
    await trx
      .insertInto('pins')
      .values({
        fingerprint: issued.fingerprint,
        host_id: host.id,
        role: 'agent',
        not_after: issued.notAfter.toISOString(),
        active: 1,
        created_at: nowIso,
        superseded_at: null,
        retired_at: null,
      })
      .execute();
  });
  return issued;
}

/** The value of one Prometheus series in a /metrics text, or undefined when absent. */
export function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
