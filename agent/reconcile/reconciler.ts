import type { Logger } from 'pino';
import { plan, STEP_ORDER, type DesiredSet, type Step, type StepKind } from './plan.js';
import type { ServiceTable } from '../supervise/service-table.js';

/** Why a reconcile runs: it decides which lifecycle event closes it. */
export type JobKind = 'apply' | 'teardown' | 'startup';

export interface ReconcileJob extends DesiredSet {
  readonly kind: JobKind;
  readonly operationId: string;
  /** Services to keep out of the plan altogether (their spec could not be resolved). */
  readonly untouchable?: readonly string[];
}

/** How a job ended: `superseded` when a newer job took over before it was done. */
export interface JobResult {
  readonly job: ReconcileJob;
  readonly outcome: 'ok' | 'failed' | 'superseded';
  readonly steps: number;
  readonly detail: string;
}

interface StepContext {
  readonly table: ServiceTable;
  readonly generation: number;
}

/** Resolves with an error message when the step did not reach its goal. */
type Executor<K extends StepKind> = (
  step: Extract<Step, { kind: K }>,
  ctx: StepContext,
) => Promise<string | undefined>;

/** One executor per step kind; the type makes a missing kind a compile error. */
export const EXECUTORS: { readonly [K in StepKind]: Executor<K> } = {
  remove: async (step, ctx) => {
    await ctx.table.remove(step.name);
    return undefined;
  },
  replace: (step, ctx) => ctx.table.start(step.desired, ctx.generation),
  start: (step, ctx) => ctx.table.start(step.desired, ctx.generation),
};

function execute(step: Step, ctx: StepContext): Promise<string | undefined> {
  switch (step.kind) {
    case 'remove':
      return EXECUTORS.remove(step, ctx);
    case 'replace':
      return EXECUTORS.replace(step, ctx);
    case 'start':
      return EXECUTORS.start(step, ctx);
  }
}

export interface ReconcilerDeps {
  readonly table: ServiceTable;
  readonly log: Logger;
  /** Steps of one kind run this many at a time. */
  readonly concurrency: number;
  finished(result: JobResult): void;
}

export interface Reconciler {
  /** Queues a job; a running job is superseded (it stops between steps). */
  request(job: ReconcileJob): void;
  busy(): boolean;
  /** Resolves when no job is running or queued. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Runs reconcile jobs single-flight: one at a time, a newer job superseding the running one.
 * A superseded job finishes the steps it has begun (a half-started process is worse than a
 * late one) and starts no more; the newer job then plans from whatever state that left.
 */
export function createReconciler(deps: ReconcilerDeps): Reconciler {
  let next: ReconcileJob | undefined;
  let running: { job: ReconcileJob; abort: AbortController } | undefined;
  let loop: Promise<void> | undefined;
  let closed = false;

  async function runJob(job: ReconcileJob, signal: AbortSignal): Promise<void> {
    const skip = new Set(job.untouchable ?? []);
    const steps = plan(
      deps.table.current().filter((c) => !skip.has(c.name)),
      job,
    ).filter((s) => !skip.has(s.name));
    const log = deps.log.child({ operationId: job.operationId, generation: job.generation });
    log.info({ steps: steps.length, kind: job.kind }, 'reconcile started');
    const failures: string[] = [];
    const ctx: StepContext = { table: deps.table, generation: job.generation };
    for (const kind of STEP_ORDER) {
      const batch = steps.filter((s) => s.kind === kind);
      let index = 0;
      const worker = async (): Promise<void> => {
        while (index < batch.length && !signal.aborted) {
          const step = batch[index++];
          if (!step) break;
          try {
            const error = await execute(step, ctx);
            if (error !== undefined) failures.push(`${step.name}: ${error}`);
          } catch (err: unknown) {
            log.error({ err, step: step.kind, service: step.name }, 'reconcile step failed');
            failures.push(`${step.name}: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(deps.concurrency, batch.length) }, worker));
    }
    const finish = (outcome: JobResult['outcome'], detail: string): void =>
      deps.finished({ job, outcome, steps: steps.length, detail });
    if (signal.aborted) {
      log.info('reconcile superseded');
      finish('superseded', 'superseded by a newer request');
    } else if (failures.length > 0) {
      log.warn({ failures: failures.length }, 'reconcile finished with failures');
      finish('failed', failures.join('; ').slice(0, 2000));
    } else {
      log.info('reconcile finished');
      finish('ok', STEP_ORDER.map((k) => `${steps.filter((s) => s.kind === k).length} ${k}`).join(', '));
    }
  }

  async function drain(): Promise<void> {
    while (next && !closed) {
      const job = next;
      next = undefined;
      running = { job, abort: new AbortController() };
      try {
        await runJob(job, running.abort.signal);
      } catch (err: unknown) {
        deps.log.error({ err }, 'reconcile crashed');
      } finally {
        running = undefined;
      }
    }
  }

  function kick(): void {
    if (loop || closed) return;
    loop = drain().finally(() => {
      loop = undefined;
      if (next) kick(); // queued after drain's last check
    });
  }

  return {
    request(job) {
      if (closed) return;
      next = job;
      running?.abort.abort();
      kick();
    },
    busy: () => running !== undefined || next !== undefined,
    async idle() {
      while (loop) await loop;
    },
    async close() {
      closed = true;
      next = undefined;
      running?.abort.abort();
      while (loop) await loop;
    },
  };
}
