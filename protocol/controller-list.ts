import { Type, type Static } from '@sinclair/typebox';
import { Timestamp } from './common.js';

/** Most controllers a heartbeat answer (and the agent's copy of it) lists: a bundle's limit. */
export const MAX_LISTED_CONTROLLERS = 16;
/** Largest `controllers.json` read, in bytes: 16 entries of two 300-character addresses fit well within. */
export const MAX_CONTROLLER_LIST_FILE_BYTES = 16 * 1024;
/** The agent's copy of the controller list, under the worker state dir (next to `bundle/`). */
export const CONTROLLER_LIST_FILE = 'controllers.json';

const HostPort = Type.String({ minLength: 3, maxLength: 300, pattern: '^[^\\s/]+:[0-9]{1,5}$' });

/** Where one controller is reached: its worker API and, when it has one, its syslog listener. */
export const ControllerAddresses = Type.Object(
  { worker: HostPort, syslog: Type.Optional(HostPort) },
  { additionalProperties: false },
);
export type ControllerAddresses = Static<typeof ControllerAddresses>;

/** Every live controller, the answering one first; worker addresses are unique. */
export const ControllerList = Type.Array(ControllerAddresses, {
  minItems: 1,
  maxItems: MAX_LISTED_CONTROLLERS,
});
export type ControllerList = Static<typeof ControllerList>;

/** `list` with each worker address once, the first entry of each kept, in order. */
export function distinctControllers(list: readonly ControllerAddresses[]): ControllerAddresses[] {
  const seen = new Set<string>();
  return list.filter((c) => !seen.has(c.worker) && (seen.add(c.worker), true));
}

/**
 * `controllers.json`: the list a controller last gave this agent in a heartbeat answer, which
 * only arrives on the mutual-TLS link to a `controller` certificate of the bundle's CA. The
 * agent fails over along it; the forwarder takes its syslog addresses from it.
 */
export const ControllerListFile = Type.Object(
  { version: Type.Literal(1), receivedAt: Timestamp, controllers: ControllerList },
  { additionalProperties: false },
);
export type ControllerListFile = Static<typeof ControllerListFile>;
