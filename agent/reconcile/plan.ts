import type { ServiceState } from '../../protocol/heartbeat.js';
import type { ServiceSpec } from '../../protocol/service-spec.js';

/** A service the agent supervises now. */
export interface CurrentService {
  readonly name: string;
  readonly specHash: string;
  readonly state: ServiceState;
  /** The generation under which this process was last started (0 if unknown). */
  readonly generation: number;
}

/** A service the controller wants, with host variables already resolved. */
export interface DesiredService {
  readonly spec: ServiceSpec;
  readonly specHash: string;
}

export interface DesiredSet {
  readonly generation: number;
  readonly services: readonly DesiredService[];
}

/**
 * One thing the executor does. `remove` stops a service and forgets it; `replace` stops the
 * old process and starts the new spec; `start` starts a service that is not running.
 */
export type Step =
  | { readonly kind: 'remove'; readonly name: string }
  | { readonly kind: 'replace'; readonly name: string; readonly desired: DesiredService }
  | { readonly kind: 'start'; readonly name: string; readonly desired: DesiredService };

export type StepKind = Step['kind'];

/** Steps run in this order: free resources first, then change, then add. */
export const STEP_ORDER: readonly StepKind[] = ['remove', 'replace', 'start'];

/** States in which a service has given up or ended and holds no process. */
const AT_REST: readonly ServiceState[] = ['stopped', 'failed'];

/**
 * The steps that take `current` to `desired`. Pure and deterministic: steps come in
 * STEP_ORDER, each kind sorted by name.
 *
 * - not desired → remove (whatever its state);
 * - desired, not present → start;
 * - present with another spec → replace;
 * - same spec but stopped or failed → start again only when the desired generation is newer
 *   than the one it last ran under (a new apply is a new wish; a re-adopting agent or a
 *   teardown does not resurrect what gave up);
 * - otherwise nothing.
 */
export function plan(current: readonly CurrentService[], desired: DesiredSet): Step[] {
  const wanted = new Map(desired.services.map((d) => [d.spec.name, d]));
  const have = new Map(current.map((c) => [c.name, c]));
  const steps: Step[] = [];
  for (const c of current) {
    if (!wanted.has(c.name)) steps.push({ kind: 'remove', name: c.name });
  }
  for (const d of desired.services) {
    const c = have.get(d.spec.name);
    if (!c) {
      steps.push({ kind: 'start', name: d.spec.name, desired: d });
    } else if (c.specHash !== d.specHash) {
      steps.push({ kind: 'replace', name: d.spec.name, desired: d });
    } else if (AT_REST.includes(c.state) && c.generation < desired.generation) {
      steps.push({ kind: 'start', name: d.spec.name, desired: d });
    }
  }
  return steps.sort(
    (a, b) => STEP_ORDER.indexOf(a.kind) - STEP_ORDER.indexOf(b.kind) || (a.name < b.name ? -1 : 1),
  );
}
