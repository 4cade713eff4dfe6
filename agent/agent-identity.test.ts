import { readdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createCa, PRIVATE_FILE_MODE, writeBundle, writeFileAtomic } from '../pki/index.js';
import { loadAgentIdentity } from './agent-identity.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function bundle() {
  const ca = await createCa();
  const dir = await mkdtemp(join(tmpdir(), 'corral-identity-'));
  dirs.push(dir);
  const agent = await ca.issue({ role: 'agent', hostId: 'h1', commonName: 'w' });
  await writeBundle(dir, {
    caPem: ca.certPem,
    manifest: {
      version: 1,
      hostId: 'h1',
      hostName: 'w',
      address: '127.0.0.1',
      agentPort: 0,
      updaterPort: 0,
      controller: '127.0.0.1:1',
      controllerClientFingerprint: 'a'.repeat(64),
      caFingerprint: ca.fingerprint,
    },
    identities: { agent },
  });
  return { ca, dir, agent, next: await ca.issue({ role: 'agent', hostId: 'h1', commonName: 'w' }) };
}

describe('agent identity renewal on disk', () => {
  it('finishes a renewal that a crash interrupted after both files were written', async () => {
    const b = await bundle();
    await writeFileAtomic(join(b.dir, 'agent.key.next'), b.next.keyPem, PRIVATE_FILE_MODE);
    await writeFileAtomic(join(b.dir, 'agent.crt.next'), b.next.certPem);
    const id = await loadAgentIdentity(b.dir);
    expect(id.fingerprint()).toBe(b.next.fingerprint);
    expect((await readdir(b.dir)).filter((f) => f.endsWith('.next'))).toEqual([]);
  });

  it('discards a new key whose certificate never arrived', async () => {
    const b = await bundle();
    await writeFileAtomic(join(b.dir, 'agent.key.next'), b.next.keyPem, PRIVATE_FILE_MODE);
    const id = await loadAgentIdentity(b.dir);
    expect(id.fingerprint()).toBe(b.agent.fingerprint);
    expect((await readdir(b.dir)).filter((f) => f.endsWith('.next'))).toEqual([]);
  });

  it('refuses a renewed certificate for another role, host or key', async () => {
    const b = await bundle();
    const id = await loadAgentIdentity(b.dir);
    const other = await b.ca.issue({ role: 'agent', hostId: 'h2', commonName: 'w' });
    await expect(id.replace('agent', other.certPem, other.keyPem)).rejects.toThrow('does not fit');
    await expect(id.replace('agent', b.next.certPem, b.agent.keyPem)).rejects.toThrow('does not fit');
    await expect(id.replace('updater', b.next.certPem, b.next.keyPem)).rejects.toThrow('does not fit');
    expect(id.fingerprint()).toBe(b.agent.fingerprint);
    await id.replace('agent', b.next.certPem, b.next.keyPem);
    expect((await loadAgentIdentity(b.dir)).fingerprint()).toBe(b.next.fingerprint);
  });
});
