import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { CertificateAuthority } from '../../pki/index.js';
import { DEFAULT_AGENT_PORT, DEFAULT_UPDATER_PORT } from '../../protocol/constants.js';
import type { EnrollRequest, EnrollResponse, JoinRequest, JoinResponse } from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry, Pin } from '../pins/pin-registry.js';
import type { TokenStore } from './token-store.js';
import {
  assertNameAllowed,
  insertPins,
  isUniqueViolation,
  newHostId,
  signWorkerCsr,
  workerProfile,
  type IssuedPin,
  type WorkerSubject,
} from './worker-identity.js';

/** What every bundle manifest says about the controller side. */
export interface Advertised {
  /** The worker API, host:port, as workers should dial it. */
  readonly controller: string;
  readonly syslog?: string;
}

export interface EnrollmentDeps {
  readonly db: Kysely<ControllerDatabase>;
  readonly ca: CertificateAuthority;
  readonly pins: MutablePinRegistry;
  readonly audit: AuditLog;
  readonly tokens: TokenStore;
  readonly clock: Clock;
  readonly log: Logger;
  readonly controllerClientFingerprint: string;
  readonly advertised: () => Advertised;
}

export interface Enrollment {
  /** Keys made here; the response carries them once, for `enroll --out-dir`. */
  enroll(request: EnrollRequest, actor: string): Promise<EnrollResponse>;
  /** Redeems a join token for CSRs made on the worker. */
  join(request: JoinRequest): Promise<JoinResponse>;
}

interface NewHost extends WorkerSubject {
  readonly agentPort: number;
  readonly updaterPort: number;
  readonly labels: Record<string, string>;
  readonly via: 'bundle' | 'join';
}

const nameTaken = (name: string): CorralError =>
  new CorralError(ErrorCode.NAME_TAKEN, `a host named ${name} is already enrolled`);

export function createEnrollment(deps: EnrollmentDeps): Enrollment {
  const { db, ca, pins, audit, tokens, clock, log } = deps;

  function manifest(host: NewHost): EnrollResponse['manifest'] {
    const advertised = deps.advertised();
    return {
      version: 1,
      hostId: host.id,
      hostName: host.name,
      address: host.address,
      agentPort: host.agentPort,
      updaterPort: host.updaterPort,
      controller: advertised.controller,
      ...(advertised.syslog !== undefined ? { syslog: advertised.syslog } : {}),
      controllerClientFingerprint: deps.controllerClientFingerprint,
      caFingerprint: ca.fingerprint,
    };
  }

  /**
   * Records the host and pins both certificates in one transaction with its audit entry.
   * A join claims its token first inside it (so a lost race is the token's 401, never a
   * name conflict) and links the token to the host after.
   */
  async function record(
    host: NewHost,
    issued: readonly IssuedPin[],
    actor: string,
    action: string,
    details: Record<string, unknown>,
    tokenId?: string,
  ): Promise<void> {
    const now = clock.now();
    let added: Pin[];
    try {
      added = await db.transaction().execute(async (trx) => {
        if (tokenId !== undefined) await tokens.claim(trx, tokenId);
        await trx
          .insertInto('hosts')
          .values({
            id: host.id,
            name: host.name,
            address: host.address,
            agent_port: host.agentPort,
            updater_port: host.updaterPort,
            sans: JSON.stringify(host.sans),
            labels: JSON.stringify(host.labels),
            enrolled_at: isoAt(now),
            enrolled_via: host.via,
            last_seen: null,
            agent_version: null,
            generation: 0,
            metrics: null,
            decommissioned_at: null,
          })
          .execute();
        const rows = await insertPins(trx, host, issued, now);
        if (tokenId !== undefined) await tokens.attach(trx, tokenId, host.id);
        await audit.append(
          {
            actor,
            action,
            target: host.name,
            details: {
              hostId: host.id,
              address: host.address,
              ...details,
              fingerprints: issued.map((p) => p.fingerprint),
            },
          },
          trx,
        );
        return rows;
      });
    } catch (e: unknown) {
      if (isUniqueViolation(e)) throw nameTaken(host.name);
      throw e;
    }
    pins.add(added);
    log.info({ hostId: host.id, hostName: host.name, via: host.via }, 'host enrolled');
  }

  return {
    async enroll(request, actor) {
      assertNameAllowed(request.name);
      const host: NewHost = {
        id: newHostId(),
        name: request.name,
        address: request.address,
        sans: [...new Set(request.sans ?? [])],
        agentPort: request.agentPort ?? DEFAULT_AGENT_PORT,
        updaterPort: request.updaterPort ?? DEFAULT_UPDATER_PORT,
        labels: request.labels ?? {},
        via: 'bundle',
      };
      const [agent, updater] = await Promise.all([
        ca.issue(workerProfile('agent', host)),
        ca.issue(workerProfile('updater', host)),
      ]);
      await record(
        host,
        [
          { role: 'agent', ...agent },
          { role: 'updater', ...updater },
        ],
        actor,
        'enroll',
        {},
      );
      return {
        hostId: host.id,
        name: host.name,
        caPem: ca.certPem,
        manifest: manifest(host),
        agent: { certPem: agent.certPem, keyPem: agent.keyPem, fingerprint: agent.fingerprint },
        updater: { certPem: updater.certPem, keyPem: updater.keyPem, fingerprint: updater.fingerprint },
      };
    },

    async join(request) {
      // Cheap refusal first; the token is claimed for real inside the transaction below.
      const token = await tokens.findRedeemable(request.token);
      const host: NewHost = {
        id: newHostId(),
        name: token.name,
        address: request.address,
        sans: [...new Set(request.sans ?? [])],
        agentPort: request.agentPort ?? DEFAULT_AGENT_PORT,
        updaterPort: request.updaterPort ?? DEFAULT_UPDATER_PORT,
        labels: token.labels,
        via: 'join',
      };
      const [agent, updater] = await Promise.all([
        signWorkerCsr(ca, request.agentCsrPem, 'agent', host),
        signWorkerCsr(ca, request.updaterCsrPem, 'updater', host),
      ]);
      await record(host, [agent, updater], `token:${token.id}`, 'join', { tokenId: token.id }, token.id);
      return {
        hostId: host.id,
        name: host.name,
        caPem: ca.certPem,
        manifest: manifest(host),
        agentCertPem: agent.certPem,
        updaterCertPem: updater.certPem,
      };
    },
  };
}
