import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { bootId, environValue, readEnviron, readProcStat, type ProcessIdentity } from '../../kit/proc.js';

/** Set in every service's environment: which agent (state dir) started it, and as what. */
export const INSTANCE_ENV = 'CORRAL_AGENT_INSTANCE';
export const SERVICE_ENV = 'CORRAL_SERVICE';
/** The hash of the resolved spec the process was started with (see spec-hash.ts). */
export const SPEC_HASH_ENV = 'CORRAL_SPEC_HASH';
const SPEC_HASH_RE = /^[0-9a-f]{64}$/;

/** A service's process-group leader found in /proc by its environment. */
export interface FoundLeader extends ProcessIdentity {
  /** From its environment; undefined for processes an agent older than this one started. */
  readonly specHash: string | undefined;
}

/** A stable token for the agent owning `stateDir` (an absolute path). */
export function agentInstance(stateDir: string): string {
  return createHash('sha256').update(stateDir).digest('hex').slice(0, 24);
}

/**
 * Process-group leaders whose environment says this agent instance started them, by service
 * name. Finds the processes a crashed agent spawned but never recorded (it died between the
 * spawn and the write of `state.json`), so the next agent adopts or stops them instead of
 * starting a second copy.
 */
export async function findServiceLeaders(instance: string): Promise<Map<string, FoundLeader[]>> {
  const found = new Map<string, FoundLeader[]>();
  const boot = await bootId();
  const marker = `${INSTANCE_ENV}=${instance}`;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = await readProcStat(pid);
    if (!stat || stat.pgrp !== pid || stat.state === 'Z' || stat.state === 'X') continue;
    const vars = await readEnviron(pid);
    if (!vars?.includes(marker)) continue; // gone, not ours to read, or not ours at all
    const name = environValue(vars, SERVICE_ENV);
    if (!name) continue;
    const hash = environValue(vars, SPEC_HASH_ENV);
    const leader = {
      pid,
      startTime: stat.startTime,
      bootId: boot,
      specHash: hash !== undefined && SPEC_HASH_RE.test(hash) ? hash : undefined,
    };
    found.set(name, [...(found.get(name) ?? []), leader]);
  }
  return found;
}
