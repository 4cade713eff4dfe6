import { Type, type Static } from '@sinclair/typebox';
import { MAX_LOG_TAIL_LINES, DiagnosticsResponse } from './agent-api.js';
import { InstanceName, Name } from './common.js';

/**
 * `POST /v1/hosts/:name/diagnose` (admin API): runs one of the agent's allow-listed
 * diagnostics (DIAGNOSTIC_KINDS) on a host, over the controller's pinned connection to its
 * agent, and audits the call. `kind` is free text so that a kind off the list gets its own
 * code (CORRAL_ERR_DIAGNOSTIC_NOT_ALLOWED) before the agent is called at all.
 */
export const AdminDiagnoseRequest = Type.Object(
  {
    kind: Type.String({ minLength: 1, maxLength: 64 }),
    /** For `log-tail`: the service whose stdout and stderr to read. */
    service: Type.Optional(InstanceName),
    /** For `log-tail`: lines from each stream (the agent's default is 100). */
    lines: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LOG_TAIL_LINES })),
  },
  { additionalProperties: false },
);
export type AdminDiagnoseRequest = Static<typeof AdminDiagnoseRequest>;

export const AdminDiagnoseResponse = Type.Object(
  { host: Name, hostId: Type.String({ maxLength: 64 }), result: DiagnosticsResponse },
  { additionalProperties: false },
);
export type AdminDiagnoseResponse = Static<typeof AdminDiagnoseResponse>;
