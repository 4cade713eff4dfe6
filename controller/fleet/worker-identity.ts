import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import type { Kysely } from 'kysely';
import { isPkiError, signCsr, type CertificateAuthority, type LeafProfile } from '../../pki/index.js';
import { RESERVED_NAMES } from '../../protocol/common.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import { isoAt } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { Pin, PinRole } from '../pins/pin-registry.js';

/** Who a worker is, as its certificates are issued for. */
export interface WorkerSubject {
  readonly id: string;
  readonly name: string;
  readonly address: string;
  readonly sans: readonly string[];
}

export interface IssuedPin {
  readonly role: PinRole;
  readonly certPem: string;
  readonly fingerprint: string;
  readonly notAfter: Date;
}

export function newHostId(): string {
  return `h-${randomBytes(8).toString('hex')}`;
}

/** Refuses names that belong to Corral's own roles (the schema already checked the shape). */
export function assertNameAllowed(name: string): void {
  if (RESERVED_NAMES.includes(name)) {
    throw new CorralError(ErrorCode.NAME_RESERVED, `the name ${name} is reserved for Corral's own roles`);
  }
}

/** Certificate profile of a worker role: host id in a SAN URI, its address and SANs as names. */
export function workerProfile(role: PinRole, subject: WorkerSubject): LeafProfile {
  const dnsNames = new Set<string>();
  const ipAddresses = new Set<string>();
  for (const raw of [subject.address, ...subject.sans]) {
    const value = raw.replace(/^\[(.*)\]$/, '$1');
    if (isIP(value) !== 0) ipAddresses.add(value);
    else dnsNames.add(value);
  }
  return {
    role,
    hostId: subject.id,
    commonName: `${subject.name}-${role}`,
    dnsNames: [...dnsNames],
    ipAddresses: [...ipAddresses],
  };
}

/** Signs a worker's CSR; a bad CSR is the caller's fault (CORRAL_ERR_CSR_REFUSED, 400). */
export async function signWorkerCsr(
  ca: CertificateAuthority,
  csrPem: string,
  role: PinRole,
  subject: WorkerSubject,
): Promise<IssuedPin> {
  try {
    const issued = await signCsr(ca, csrPem, workerProfile(role, subject));
    return { role, ...issued };
  } catch (e: unknown) {
    if (isPkiError(e)) throw new CorralError(ErrorCode.CSR_REFUSED, `${role} CSR refused: ${e.message}`);
    throw e;
  }
}

/** Inserts pins for freshly issued certificates; returns them as the registry holds them. */
export async function insertPins(
  trx: Kysely<ControllerDatabase>,
  subject: WorkerSubject,
  issued: readonly IssuedPin[],
  nowMs: number,
): Promise<Pin[]> {
  if (issued.length === 0) return [];
  await trx
    .insertInto('pins')
    .values(
      issued.map((p) => ({
        fingerprint: p.fingerprint,
        host_id: subject.id,
        role: p.role,
        not_after: p.notAfter.toISOString(),
        active: 1,
        created_at: isoAt(nowMs),
        superseded_at: null,
        retired_at: null,
        decommissioned: 0,
      })),
    )
    .execute();
  return issued.map((p) => ({
    fingerprint: p.fingerprint,
    hostId: subject.id,
    hostName: subject.name,
    role: p.role,
    notAfterMs: p.notAfter.getTime(),
    superseded: false,
  }));
}
