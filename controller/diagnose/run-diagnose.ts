import { Value } from '@sinclair/typebox/value';
import type { Kysely } from 'kysely';
import type { AdminDiagnoseRequest, AdminDiagnoseResponse } from '../../protocol/admin-diagnose.js';
import { DIAGNOSTIC_KINDS, DiagnosticsResponse, type DiagnosticKind } from '../../protocol/agent-api.js';
import { CorralError, ErrorCode, envelopeOf, isWireCode } from '../../protocol/errors.js';
import type { WorkerClient } from '../agent-client.js';
import type { AuditLog } from '../audit/audit-log.js';
import type { ControllerDatabase } from '../db/schema.js';
import { describeCallError } from '../fleet/call-errors.js';
import { findHostByName } from '../fleet/host-store.js';
import type { PinRegistry } from '../pins/pin-registry.js';

/** How long one diagnostic may take on the agent, in ms (a process list on a busy host). */
export const DIAGNOSE_TIMEOUT_MS = 15_000;

export interface DiagnoseDeps {
  readonly db: Kysely<ControllerDatabase>;
  readonly pins: PinRegistry;
  readonly client: WorkerClient;
  readonly audit: AuditLog;
}

const ALLOWED: ReadonlySet<string> = new Set(DIAGNOSTIC_KINDS);

/** Throws CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED for a kind outside the agent's allow-list. */
export function checkDiagnosticKind(kind: string): DiagnosticKind {
  if (ALLOWED.has(kind)) return kind as DiagnosticKind;
  throw new CorralError(
    ErrorCode.DIAGNOSTIC_NOT_ALLOWED,
    `diagnostic ${JSON.stringify(kind.slice(0, 64))} is not allowed; the agent runs only ${DIAGNOSTIC_KINDS.join(', ')}`,
  );
}

/**
 * Runs one allow-listed diagnostic on a host's agent over the controller's pinned mutual-TLS
 * connection (the agent's certificate must be the one pinned for that host, checked on the
 * connection that carries the call). The kind is checked first, so nothing off the list
 * reaches any agent; every call made is audited (`diagnose`, with its outcome). An agent's
 * coded refusal (an unknown service: 404) is passed on with its code; no answer is
 * CORRAL_ERR_UNAVAILABLE or CORRAL_ERR_TIMEOUT; an answer off the schema CORRAL_ERR_UNAVAILABLE.
 */
export async function runDiagnose(
  deps: DiagnoseDeps,
  hostName: string,
  request: AdminDiagnoseRequest,
  actor: string,
): Promise<AdminDiagnoseResponse> {
  const kind = checkDiagnosticKind(request.kind);
  if (kind === 'log-tail' && request.service === undefined) {
    throw new CorralError(ErrorCode.VALIDATION, 'body/service is required for log-tail');
  }
  if (kind !== 'log-tail' && (request.service !== undefined || request.lines !== undefined)) {
    throw new CorralError(
      ErrorCode.VALIDATION,
      `body/service and body/lines are for log-tail only, not ${kind}`,
    );
  }
  const host = await findHostByName(deps.db, hostName);
  if (!host) throw new CorralError(ErrorCode.NOT_FOUND, `no host named ${hostName}`);
  if (host.decommissioned_at !== null) {
    throw new CorralError(ErrorCode.CONFLICT, `host ${hostName} is decommissioned`);
  }
  const fingerprints = deps.pins.fingerprintsFor(host.id, 'agent');
  if (fingerprints.length === 0) {
    throw new CorralError(ErrorCode.NOT_ENROLLED, `host ${hostName} has no agent certificate pinned`);
  }
  const body = {
    kind,
    ...(request.service !== undefined && { service: request.service }),
    ...(request.lines !== undefined && { lines: request.lines }),
  };
  const audit = (outcome: string): Promise<unknown> =>
    deps.audit.append({
      actor,
      action: 'diagnose',
      target: host.name,
      details: { hostId: host.id, ...body, outcome },
    });

  let failure: CorralError;
  try {
    const reply = await deps.client.call(
      { hostId: host.id, address: host.address, port: host.agent_port, fingerprints },
      { method: 'POST', path: '/v1/diagnostics', body, timeoutMs: DIAGNOSE_TIMEOUT_MS },
    );
    if (
      reply.statusCode === 200 &&
      Value.Check(DiagnosticsResponse, reply.json) &&
      reply.json.kind === kind
    ) {
      await audit('ok');
      return { host: host.name, hostId: host.id, result: reply.json };
    }
    const envelope = envelopeOf(JSON.stringify(reply.json ?? null));
    failure =
      envelope && isWireCode(envelope.error.code) && reply.statusCode >= 400 && reply.statusCode < 500
        ? new CorralError(
            envelope.error.code,
            `agent on ${host.name}: ${envelope.error.message.slice(0, 500)}`,
          )
        : new CorralError(
            ErrorCode.UNAVAILABLE,
            `agent on ${host.name} answered ${reply.statusCode} without a valid ${kind} result`,
          );
  } catch (e: unknown) {
    const f = describeCallError(e);
    failure = new CorralError(
      f.code === ErrorCode.TIMEOUT ? ErrorCode.TIMEOUT : ErrorCode.UNAVAILABLE,
      `agent on ${host.name} could not be asked: ${f.code}: ${f.message}`,
    );
  }
  await audit(failure.code);
  throw failure;
}
