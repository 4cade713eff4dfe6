import { Type, type Static } from '@sinclair/typebox';
import { MAX_APPLY_BODY_BYTES, MAX_APPLY_SERVICES } from '../../protocol/agent-api.js';
import { ServiceSpec } from '../../protocol/service-spec.js';
import { readJsonFile, writeJsonAtomic } from '../../kit/json-file.js';
import { UNTRACKED, type StateFiles } from '../state/state-manifest.js';

/**
 * `agent-state.json`: the desired generation and set, as the controller sent them (host
 * variables unresolved, so they are resolved again on this host at each start). Written
 * durably before an apply is acknowledged, so a 202 survives an agent crash.
 */
export const DesiredState = Type.Object(
  {
    version: Type.Literal(1),
    generation: Type.Integer({ minimum: 0 }),
    /** Hash of the apply that set `generation`, to tell a resend from a conflicting apply. */
    applyHash: Type.String({ maxLength: 64 }),
    operationId: Type.String({ maxLength: 64 }),
    /** The desired set now: the apply's services minus any torn down since. */
    services: Type.Array(ServiceSpec, { maxItems: MAX_APPLY_SERVICES }),
  },
  { additionalProperties: false },
);
export type DesiredState = Static<typeof DesiredState>;

export const DESIRED_STATE_FILE = 'agent-state.json';
export const MAX_DESIRED_STATE_BYTES = 2 * MAX_APPLY_BODY_BYTES;

export const EMPTY_DESIRED: DesiredState = {
  version: 1,
  generation: 0,
  applyHash: '',
  operationId: '',
  services: [],
};

export async function loadDesiredState(path: string): Promise<DesiredState> {
  return (await readJsonFile(path, DesiredState, 'agent state', MAX_DESIRED_STATE_BYTES)) ?? EMPTY_DESIRED;
}

/** Durable; the file is listed in the state manifest once it is on disk. */
export async function saveDesiredState(
  path: string,
  state: DesiredState,
  stateFiles: StateFiles = UNTRACKED,
): Promise<void> {
  await writeJsonAtomic(path, state, true);
  await stateFiles.note(path);
}
