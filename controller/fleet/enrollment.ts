import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { CertificateAuthority } from '../../pki/index.js';
import { DEFAULT_AGENT_PORT, DEFAULT_UPDATER_PORT } from '../../protocol/constants.js';
import type { EnrollRequest, EnrollResponse, JoinRequest, JoinResponse } from '../../protocol/enrollment.js';
import { CorralError, ErrorCode } from '../../protocol/errors.js';
import type { AuditLog } from '../audit/audit-log.js';
import { isoAt, type Clock } from '../clock.js';
import { isUniqueViolation } from '../db/dialect-of.js';
import type { ControllerDatabase } from '../db/schema.js';
import type { MutablePinRegistry, Pin } from '../pins/pin-registry.js';
import type { HostRow } from './host-store.js';
import { createJoinPolicy, normalizeSourceAddress, type JoinPolicy } from './join-policy.js';
import type { TokenStore } from './token-store.js';
import type { FleetEventSink } from '../events/event-log.js';
import {
  assertNameAllowed,
  insertPins,
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
  /** The other controllers' worker APIs, when several serve one database. */
  readonly peers?: readonly string[];
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
  /** Read for every enrollment, before anything is recorded; it must not throw. */
  readonly advertised: () => Advertised | Promise<Advertised>;
  /** What a join may claim (default: any address). */
  readonly joinPolicy?: JoinPolicy;
  /** `host.enrolled` goes here, in the enrollment's transaction (fleet events). */
  readonly events?: FleetEventSink;
}

/** Where a join request came from, as the join listener saw it. */
export interface JoinOrigin {
  /** The peer's IP address on the connection that carried the request. */
  readonly source: string;
}

export interface Enrollment {
  /**
   * Keys made here; the response carries them once, for `enroll --out-dir`. With `replace`,
   * a host of that name whose enrollment never completed (pending, no bundle confirmed
   * written, never seen) is retired in the same transaction and its name taken over;
   * anything else holding the name is CORRAL_ERR_REPLACE_REFUSED.
   */
  enroll(request: EnrollRequest, actor: string): Promise<EnrollResponse>;
  /**
   * Redeems a join token for CSRs made on the worker and records where the request came from.
   * A claimed address the join policy refuses is CORRAL_ERR_JOIN_ADDRESS_REFUSED, with the
   * token left unused.
   */
  join(request: JoinRequest, origin: JoinOrigin): Promise<JoinResponse>;
  /**
   * Records that the worker's bundle is on disk (confirmed by `enroll` after writing it, or by
   * the worker over mutual TLS after a join). Returns the time recorded, the first one if it
   * was confirmed before; CORRAL_ERR_NOT_FOUND for a host that is not active.
   */
  bundleWritten(hostId: string, by: string): Promise<string>;
}

interface NewHost extends WorkerSubject {
  readonly agentPort: number;
  readonly updaterPort: number;
  readonly labels: Record<string, string>;
  readonly via: 'bundle' | 'join';
  readonly joinSource: string | null;
}

/** An enrollment cut short: never seen and no bundle confirmed written, so nothing can be using it. */
export function isReplaceable(
  host: Pick<HostRow, 'last_seen' | 'bundle_written_at' | 'decommissioned_at'>,
): boolean {
  return host.decommissioned_at === null && host.last_seen === null && host.bundle_written_at === null;
}

function nameTaken(name: string, holder: HostRow | undefined): CorralError {
  const hint =
    holder && isReplaceable(holder)
      ? ` (pending: its bundle was never confirmed written and it was never seen; \`controller enroll --replace\` takes the name over)`
      : '';
  return new CorralError(ErrorCode.NAME_TAKEN, `a host named ${name} is already enrolled${hint}`);
}

function replaceRefused(host: HostRow): CorralError {
  const why =
    host.last_seen !== null
      ? `it was seen (last heartbeat ${host.last_seen})`
      : `its bundle was written (${host.bundle_written_at ?? '?'})`;
  return new CorralError(
    ErrorCode.REPLACE_REFUSED,
    `refusing to replace host ${host.name}: ${why}; only a pending host that was never seen and whose bundle was never written can be replaced. Decommission it if it must go`,
  );
}

/** Most labels a host may carry (the Labels schema's limit). */
const MAX_HOST_LABELS = 64;

/**
 * A joining host's labels: the token's (set by an operator) and the ones the worker asked for
 * (`worker install --label`). A key both set to different values is CORRAL_ERR_CONFLICT and
 * more than MAX_HOST_LABELS together is CORRAL_ERR_VALIDATION, before the token is claimed, so
 * the worker can retry with the same token.
 */
export function joinLabels(
  fromToken: Readonly<Record<string, string>>,
  asked: Readonly<Record<string, string>>,
): Record<string, string> {
  for (const [key, value] of Object.entries(asked)) {
    const set = fromToken[key];
    if (set !== undefined && set !== value)
      throw new CorralError(
        ErrorCode.CONFLICT,
        `label ${key}=${value} clashes with the join token's ${key}=${set}`,
      );
  }
  const labels = { ...asked, ...fromToken };
  if (Object.keys(labels).length > MAX_HOST_LABELS)
    throw new CorralError(ErrorCode.VALIDATION, `a host has at most ${MAX_HOST_LABELS} labels`);
  return labels;
}

const activeHostNamed = (db: Kysely<ControllerDatabase>, name: string): Promise<HostRow | undefined> =>
  db
    .selectFrom('hosts')
    .selectAll()
    .where('name', '=', name)
    .where('decommissioned_at', 'is', null)
    .executeTakeFirst();

export function createEnrollment(deps: EnrollmentDeps): Enrollment {
  const { db, ca, pins, audit, tokens, clock, log } = deps;
  const joinPolicy = deps.joinPolicy ?? createJoinPolicy();

  function manifest(host: NewHost, advertised: Advertised): EnrollResponse['manifest'] {
    const peers = (advertised.peers ?? []).filter((p) => p !== advertised.controller);
    return {
      version: 1,
      hostId: host.id,
      hostName: host.name,
      address: host.address,
      agentPort: host.agentPort,
      updaterPort: host.updaterPort,
      controller: advertised.controller,
      ...(peers.length > 0 ? { controllers: [advertised.controller, ...peers] } : {}),
      ...(advertised.syslog !== undefined ? { syslog: advertised.syslog } : {}),
      controllerClientFingerprint: deps.controllerClientFingerprint,
      caFingerprint: ca.fingerprint,
    };
  }

  /**
   * Retires a host whose enrollment never completed so its name can be enrolled again, inside
   * `trx`: marked decommissioned, pins dropped, audited as `replace`. Refuses anything else.
   */
  async function retireForReplace(
    trx: Kysely<ControllerDatabase>,
    name: string,
    replacement: string,
    actor: string,
    nowIso: string,
  ): Promise<HostRow | undefined> {
    const old = await activeHostNamed(trx, name);
    if (!old) return undefined;
    if (!isReplaceable(old)) throw replaceRefused(old);
    const marked = await trx
      .updateTable('hosts')
      .set({ decommissioned_at: nowIso })
      .where('id', '=', old.id)
      .where('decommissioned_at', 'is', null)
      .where('last_seen', 'is', null)
      .where('bundle_written_at', 'is', null)
      .executeTakeFirst();
    if (marked.numUpdatedRows !== 1n) throw replaceRefused(old);
    await trx
      .updateTable('pins')
      .set({ active: 0, retired_at: nowIso })
      .where('host_id', '=', old.id)
      .where('active', '=', 1)
      .execute();
    await audit.append(
      {
        actor,
        action: 'replace',
        target: name,
        details: {
          hostId: old.id,
          replacedBy: replacement,
          enrolledAt: old.enrolled_at,
          enrolledVia: old.enrolled_via,
          reason: 'pending: bundle never confirmed written, never seen',
        },
      },
      trx,
    );
    return old;
  }

  /**
   * Records the host and pins both certificates in one transaction with its audit entry.
   * A join claims its token first inside it (so a lost race is the token's 401, never a
   * name conflict) and links the token to the host after. With `replace`, a host whose
   * enrollment never completed gives up its name first, in the same transaction.
   */
  async function record(
    host: NewHost,
    issued: readonly IssuedPin[],
    o: {
      actor: string;
      action: string;
      details: Record<string, unknown>;
      tokenId?: string;
      replace?: boolean;
    },
  ): Promise<HostRow | undefined> {
    const now = clock.now();
    const nowIso = isoAt(now);
    let added: Pin[];
    let replaced: HostRow | undefined;
    try {
      added = await db.transaction().execute(async (trx) => {
        if (o.tokenId !== undefined) await tokens.claim(trx, o.tokenId);
        replaced = o.replace ? await retireForReplace(trx, host.name, host.id, o.actor, nowIso) : undefined;
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
            enrolled_at: nowIso,
            enrolled_via: host.via,
            last_seen: null,
            agent_version: null,
            generation: 0,
            metrics: null,
            decommissioned_at: null,
            join_source: host.joinSource,
            bundle_written_at: null,
            wiped_at: null,
            wipe_report: null,
          })
          .execute();
        const rows = await insertPins(trx, host, issued, now);
        if (o.tokenId !== undefined) await tokens.attach(trx, o.tokenId, host.id);
        await audit.append(
          {
            actor: o.actor,
            action: o.action,
            target: host.name,
            details: {
              hostId: host.id,
              address: host.address,
              ...(host.joinSource !== null ? { source: host.joinSource } : {}),
              ...(replaced ? { replaces: replaced.id } : {}),
              ...o.details,
              fingerprints: issued.map((p) => p.fingerprint),
            },
          },
          trx,
        );
        await deps.events?.append(trx, [
          {
            kind: 'host.enrolled',
            host: { id: host.id, name: host.name },
            data: { via: host.via, address: host.address, replaces: replaced?.id },
          },
        ]);
        return rows;
      });
    } catch (e: unknown) {
      if (isUniqueViolation(e)) throw nameTaken(host.name, await activeHostNamed(db, host.name));
      throw e;
    }
    if (replaced) {
      pins.revokeHost(replaced.id);
      log.warn({ hostId: replaced.id, hostName: host.name, replacedBy: host.id }, 'pending host replaced');
    }
    pins.add(added);
    log.info({ hostId: host.id, hostName: host.name, via: host.via }, 'host enrolled');
    return replaced;
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
        joinSource: null,
      };
      const [agent, updater] = await Promise.all([
        ca.issue(workerProfile('agent', host)),
        ca.issue(workerProfile('updater', host)),
      ]);
      const advertised = await deps.advertised();
      const replaced = await record(
        host,
        [
          { role: 'agent', ...agent },
          { role: 'updater', ...updater },
        ],
        { actor, action: 'enroll', details: {}, replace: request.replace === true },
      );
      return {
        hostId: host.id,
        name: host.name,
        ...(replaced ? { replaced: replaced.id } : {}),
        caPem: ca.certPem,
        manifest: manifest(host, advertised),
        agent: { certPem: agent.certPem, keyPem: agent.keyPem, fingerprint: agent.fingerprint },
        updater: { certPem: updater.certPem, keyPem: updater.keyPem, fingerprint: updater.fingerprint },
      };
    },

    async join(request, origin) {
      // Cheap refusal first; the token is claimed for real inside the transaction below.
      const token = await tokens.findRedeemable(request.token);
      // Only a token holder learns the policy; a refusal leaves the token unused.
      joinPolicy.check(request.address);
      const labels = joinLabels(token.labels, request.labels ?? {});
      const host: NewHost = {
        id: newHostId(),
        name: token.name,
        address: request.address,
        sans: [...new Set(request.sans ?? [])],
        agentPort: request.agentPort ?? DEFAULT_AGENT_PORT,
        updaterPort: request.updaterPort ?? DEFAULT_UPDATER_PORT,
        labels,
        via: 'join',
        joinSource: normalizeSourceAddress(origin.source),
      };
      const [agent, updater] = await Promise.all([
        signWorkerCsr(ca, request.agentCsrPem, 'agent', host),
        signWorkerCsr(ca, request.updaterCsrPem, 'updater', host),
      ]);
      const advertised = await deps.advertised();
      await record(host, [agent, updater], {
        actor: `token:${token.id}`,
        action: 'join',
        details: { tokenId: token.id },
        tokenId: token.id,
      });
      return {
        hostId: host.id,
        name: host.name,
        caPem: ca.certPem,
        manifest: manifest(host, advertised),
        agentCertPem: agent.certPem,
        updaterCertPem: updater.certPem,
      };
    },

    async bundleWritten(hostId, by) {
      const nowIso = isoAt(clock.now());
      const result = await db
        .updateTable('hosts')
        .set({ bundle_written_at: nowIso })
        .where('id', '=', hostId)
        .where('decommissioned_at', 'is', null)
        .where('bundle_written_at', 'is', null)
        .executeTakeFirst();
      const row = await db
        .selectFrom('hosts')
        .select(['bundle_written_at', 'decommissioned_at'])
        .where('id', '=', hostId)
        .executeTakeFirst();
      if (!row || row.decommissioned_at !== null || row.bundle_written_at === null)
        throw new CorralError(ErrorCode.NOT_FOUND, `no active host ${hostId}`);
      if (result.numUpdatedRows === 1n) log.info({ hostId, by }, 'bundle confirmed written');
      return row.bundle_written_at;
    },
  };
}
