import { pidFilePath, readPidFile } from '../kit/pid-file.js';
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../cli/up/free-port.js';
import { pushRelease } from '../controller/release/push.js';
import { writeBundle } from '../pki/index.js';
import { AGENT_HEALTH_SOCKET } from '../protocol/agent-local.js';
import { probeOnce } from '../updater/health-probe.js';
import { type Updater } from '../updater/index.js';
import { AGENT_NODE_FLAGS } from '../agent/node-flags.js';
import { makePki } from './agent-fixture.js';
import { runCorral } from '../cli/up/corral-cli.js';
import { CORRAL_BIN, startUpdater, tempDir, until } from './updater-harness.js';

const execFileAsync = promisify(execFile);
/** The issue's budget for a release of Corral itself. */
const MAX_RELEASE_BYTES = 10_000_000;
const MAX_RELEASE_ENTRIES = 300;

interface Built {
  file: string;
  version: string;
  sha256: string;
  bytes: number;
  entries: number;
}

let dir: string;
const updaters: Updater[] = [];

async function build(out: string, version: string): Promise<Built> {
  const r = await runCorral({ bin: CORRAL_BIN }, [
    'release',
    'build',
    '--out',
    out,
    '--version',
    version,
    '--json',
  ]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Built;
}

beforeAll(async () => {
  dir = await tempDir('release-build');
});
afterAll(async () => {
  for (const u of updaters) await u.close();
  await rm(dir, { recursive: true, force: true });
});

describe('corral release build (needs the build: npx tsc -p .)', () => {
  it('is deterministic, small, holds production code only, and installs through the real updater with a healthy agent', async () => {
    const a = await build(join(dir, 'a.tar.gz'), '7.0.0');
    const b = await build(join(dir, 'b.tar.gz'), '7.0.0');
    expect(b.sha256).toBe(a.sha256);
    expect(b.bytes).toBe(a.bytes);
    expect(a.bytes).toBeLessThan(MAX_RELEASE_BYTES);
    expect(a.entries).toBeLessThan(MAX_RELEASE_ENTRIES);

    const { stdout } = await execFileAsync('tar', ['tzf', a.file]);
    const paths = stdout.trim().split('\n');
    expect(paths).toHaveLength(a.entries);
    const packages = new Set(
      paths.filter((p) => p.startsWith('node_modules/')).map((p) => p.split('/')[1] ?? ''),
    );
    // Only the native binding and its loader: no dev dependency, no other package.
    expect([...packages].sort()).toEqual(['', 'bindings', 'file-uri-to-path', 'sqlite3']);
    expect(paths).toContain('node_modules/sqlite3/build/Release/node_sqlite3.node');
    expect(paths.some((p) => /(^|\/)test\//.test(p) || p.endsWith('.ts'))).toBe(false);

    // A worker whose updater gets it from the controller's push, like `controller update` does.
    const pki = await makePki();
    const stateDir = join(dir, 'worker');
    const agent = await pki.ca.issue({
      role: 'agent',
      hostId: 'rb-1',
      commonName: 'rb-1',
      ipAddresses: ['127.0.0.1'],
    });
    const updaterLeaf = await pki.ca.issue({
      role: 'updater',
      hostId: 'rb-1',
      commonName: 'rb-1',
      ipAddresses: ['127.0.0.1'],
    });
    await writeBundle(join(stateDir, 'bundle'), {
      caPem: pki.ca.certPem,
      manifest: {
        version: 1,
        hostId: 'rb-1',
        hostName: 'rb-1',
        address: '127.0.0.1',
        agentPort: await freePort(),
        updaterPort: 0,
        // Nothing listens there: the agent's heartbeats back off, which does not touch its health.
        controller: '127.0.0.1:9',
        controllerClientFingerprint: pki.controllerClient.fingerprint,
        caFingerprint: pki.ca.fingerprint,
      },
      identities: {
        agent: { certPem: agent.certPem, keyPem: agent.keyPem },
        updater: { certPem: updaterLeaf.certPem, keyPem: updaterLeaf.keyPem },
      },
    });
    const worker = {
      name: 'rb-1',
      stateDir,
      root: join(dir, 'root'),
      updaterFingerprint: updaterLeaf.fingerprint,
    };
    const u = await startUpdater(worker, { agentStateDir: stateDir, healthTimeoutMs: 120_000 });
    updaters.push(u);
    const report = await pushRelease({
      file: a.file,
      sha256: a.sha256,
      targets: [
        {
          hostName: 'rb-1',
          address: '127.0.0.1',
          updaterPort: u.port,
          updaterFingerprint: updaterLeaf.fingerprint,
        },
      ],
      tls: pki.controllerClient,
    });
    expect(report.results[0]).toMatchObject({ outcome: 'updated', current: '7.0.0' });
    // The agent the updater started from the release answers on its health socket.
    const health = await until(async () => {
      const r = await probeOnce(join(stateDir, AGENT_HEALTH_SOCKET));
      return r.ok ? r.health : undefined;
    }, 'the released agent to be healthy');
    expect(health.version).toBe('7.0.0');
    // It runs with the node flags of the release's start command.
    const agentPid = await readPidFile(pidFilePath(stateDir, 'agent'));
    if (!agentPid) throw new Error('the released agent wrote no pid file');
    const { pid } = agentPid;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    expect(argv.slice(1, 1 + AGENT_NODE_FLAGS.length)).toEqual([...AGENT_NODE_FLAGS]);
  }, 300_000);
});
