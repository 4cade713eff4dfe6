import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  BUNDLE_MANIFEST_FILE,
  controllerAddresses,
  loadBundle,
  MAX_BUNDLE_CONTROLLERS,
  writeBundle,
  type Bundle,
} from './bundle.js';
import { createCa, type CertificateAuthority } from './ca.js';
import { PkiErrorCode } from './errors.js';

let ca: CertificateAuthority;
let bundle: Bundle;
const dirs: string[] = [];

beforeAll(async () => {
  ca = await createCa();
  const client = await ca.issue({ role: 'controller-client', commonName: 'controller' });
  const agent = await ca.issue({ role: 'agent', hostId: 'h-3', commonName: 'db-3' });
  const updater = await ca.issue({ role: 'updater', hostId: 'h-3', commonName: 'db-3' });
  bundle = {
    caPem: ca.certPem,
    manifest: {
      version: 1,
      hostId: 'h-3',
      hostName: 'db-3',
      address: '127.0.0.1',
      agentPort: 8765,
      updaterPort: 8766,
      controller: '127.0.0.1:8771',
      controllerClientFingerprint: client.fingerprint,
      caFingerprint: ca.fingerprint,
    },
    identities: {
      agent: { certPem: agent.certPem, keyPem: agent.keyPem },
      updater: { certPem: updater.certPem, keyPem: updater.keyPem },
    },
  };
});

afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function written(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'corral-bundle-'));
  dirs.push(root);
  const dir = join(root, 'bundle');
  await writeBundle(dir, bundle);
  return dir;
}

describe('bundles', () => {
  it('round trip keeps fingerprints; keys are 0600 and the directory 0700', async () => {
    const dir = await written();
    const loaded = await loadBundle(dir);
    expect(loaded.manifest).toEqual(bundle.manifest);
    expect(loaded.identities.agent?.fingerprint).toBe(
      (await import('./fingerprint.js')).fingerprintPem(bundle.identities.agent!.certPem),
    );
    expect(loaded.identities.updater?.keyPem).toBe(bundle.identities.updater?.keyPem);
    expect((await stat(join(dir, 'agent.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'updater.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  it('refuses to load a bundle whose key is group- or world-readable', async () => {
    const dir = await written();
    await chmod(join(dir, 'agent.key'), 0o644);
    await expect(loadBundle(dir)).rejects.toMatchObject({
      code: PkiErrorCode.KEY_PERMISSIONS,
      message: expect.stringContaining('chmod 600'),
    });
    await chmod(join(dir, 'agent.key'), 0o640);
    await expect(loadBundle(dir)).rejects.toMatchObject({ code: PkiErrorCode.KEY_PERMISSIONS });
  });

  it('reports a missing bundle distinctly from a broken one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'corral-bundle-'));
    dirs.push(root);
    await expect(loadBundle(root)).rejects.toMatchObject({ code: PkiErrorCode.BUNDLE_MISSING });
    const dir = await written();
    await writeFile(join(dir, BUNDLE_MANIFEST_FILE), '{"version": 2}');
    await expect(loadBundle(dir)).rejects.toMatchObject({ code: PkiErrorCode.BUNDLE_INVALID });
  });

  it('refuses a key that belongs to another certificate', async () => {
    const dir = await written();
    await writeFile(join(dir, 'agent.key'), await readFile(join(dir, 'updater.key')), { mode: 0o600 });
    await expect(loadBundle(dir)).rejects.toMatchObject({ code: PkiErrorCode.BUNDLE_INVALID });
  });

  it('refuses a certificate from another CA', async () => {
    const dir = await written();
    const other = await createCa();
    const foreign = await other.issue({ role: 'agent', hostId: 'h-3', commonName: 'db-3' });
    await writeFile(join(dir, 'agent.crt'), foreign.certPem);
    await writeFile(join(dir, 'agent.key'), foreign.keyPem, { mode: 0o600 });
    await expect(loadBundle(dir)).rejects.toMatchObject({ code: PkiErrorCode.BUNDLE_INVALID });
  });

  it('lists every controller it names, the writing one first; a manifest without the list still loads', async () => {
    const dir = await written();
    const old = await loadBundle(dir);
    expect(old.manifest.controllers).toBeUndefined();
    expect(controllerAddresses(old.manifest)).toEqual(['127.0.0.1:8771']);
    const manifest = { ...bundle.manifest, controllers: ['127.0.0.1:8771', 'ctl-b.example:8771'] };
    await writeFile(join(dir, BUNDLE_MANIFEST_FILE), JSON.stringify(manifest));
    const loaded = await loadBundle(dir);
    expect(controllerAddresses(loaded.manifest)).toEqual(['127.0.0.1:8771', 'ctl-b.example:8771']);
    expect(controllerAddresses({ controller: 'a:1', controllers: ['b:2', 'a:1'] })).toEqual(['a:1', 'b:2']);
  });

  it('refuses a controller list that is too long, empty, repeated or holds a non-address', async () => {
    const dir = await written();
    const lists: unknown[] = [
      Array.from({ length: MAX_BUNDLE_CONTROLLERS + 1 }, (_, i) => `10.0.0.${i}:8771`),
      [],
      ['10.0.0.1:8771', '10.0.0.1:8771'],
      ['10.0.0.1:8771', 'http://evil/:80'],
      ['10.0.0.1'],
      '10.0.0.1:8771',
    ];
    for (const controllers of lists) {
      await writeFile(join(dir, BUNDLE_MANIFEST_FILE), JSON.stringify({ ...bundle.manifest, controllers }));
      await expect(loadBundle(dir)).rejects.toMatchObject({ code: PkiErrorCode.BUNDLE_INVALID });
      await expect(
        writeBundle(join(dir, 'again'), {
          ...bundle,
          manifest: { ...bundle.manifest, controllers } as Bundle['manifest'],
        }),
      ).rejects.toMatchObject({ code: PkiErrorCode.BUNDLE_INVALID });
    }
    const full = Array.from({ length: MAX_BUNDLE_CONTROLLERS }, (_, i) => `10.0.0.${i}:8771`);
    await writeFile(
      join(dir, BUNDLE_MANIFEST_FILE),
      JSON.stringify({ ...bundle.manifest, controllers: full }),
    );
    expect((await loadBundle(dir)).manifest.controllers).toHaveLength(MAX_BUNDLE_CONTROLLERS);
  });
});
