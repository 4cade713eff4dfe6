import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { desiredSetHash, specHash } from '../agent/reconcile/spec-hash.js';
import { auditHash } from '../controller/audit/audit-log.js';
import { specHashOf } from '../controller/deploy/desired-state.js';
import type { ServiceSpec } from '../protocol/service-spec.js';
import { canonicalJson } from '../kit/canonical-json.js';

/** Written by the code before kit/ (see its `about`): agent and controller hashes, audit rows. */
interface Fixture {
  specs: { spec: ServiceSpec; agentSpecHash: string; controllerSpecHash: string }[];
  desiredSet: { services: ServiceSpec[]; agentDesiredSetHash: string };
  canonical: { value: unknown; lax: string; strict: string }[];
  auditRows: {
    seq: number;
    time: string;
    actor: string;
    action: string;
    target: string;
    details: string;
    prev_hash: string;
    hash: string;
  }[];
}

const fixture = JSON.parse(
  await readFile(new URL('./fixtures/canonical-json.json', import.meta.url), 'utf8'),
) as Fixture;

describe('canonical JSON keeps every hash already on disk', () => {
  it('gives the spec hashes the agent and the controller computed before', () => {
    expect(fixture.specs.length).toBeGreaterThan(3);
    for (const { spec, agentSpecHash, controllerSpecHash } of fixture.specs) {
      expect(agentSpecHash).toBe(controllerSpecHash);
      expect(specHash(spec)).toBe(agentSpecHash);
      expect(specHashOf(spec)).toBe(controllerSpecHash);
    }
    expect(desiredSetHash(fixture.desiredSet.services)).toBe(fixture.desiredSet.agentDesiredSetHash);
  });

  it('writes the same bytes as both former functions for every kind of JSON value', () => {
    for (const { value, lax, strict } of fixture.canonical) {
      expect(lax).toBe(strict);
      expect(canonicalJson(value)).toBe(strict);
    }
  });

  it('verifies the audit chain rows the former code wrote', () => {
    let prev = '0'.repeat(64);
    for (const row of fixture.auditRows) {
      const details = JSON.parse(row.details) as Record<string, unknown>;
      expect(canonicalJson(details)).toBe(row.details);
      expect(row.prev_hash).toBe(prev);
      const { prev_hash: prevHash, hash, ...rest } = row;
      expect(auditHash({ ...rest, details, prevHash })).toBe(hash);
      prev = hash;
    }
    expect(fixture.auditRows.length).toBeGreaterThan(5);
  });
});
