import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createCa, type KeyAlgorithm } from '../pki/index.js';
import { fmt, median, rounds } from './lib/stats.js';

/**
 * `npm run bench -- pki`: leaf certificates issued per second (fresh key + signature) by
 * Corral's pki/ (DER templates signed with node:crypto) and by the openssl command-line tool doing
 * the same work in the same run (one `openssl req -x509 -newkey … -CA` per certificate).
 */
const execFileAsync = promisify(execFile);
const ROUNDS = 3;

interface Case {
  readonly label: string;
  readonly algorithm: KeyAlgorithm;
  readonly openssl: string[];
  readonly count: number;
}

const CASES: Case[] = [
  {
    label: 'ECDSA P-256',
    algorithm: 'ecdsa-p256',
    openssl: ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    count: 200,
  },
  { label: 'RSA 3072', algorithm: 'rsa-3072', openssl: ['-newkey', 'rsa:3072'], count: 8 },
];

async function corralRate(c: Case): Promise<number> {
  const ca = await createCa();
  const start = performance.now();
  for (let i = 0; i < c.count; i++) {
    await ca.issue(
      { role: 'agent', hostId: `h-${i}`, commonName: `w-${i}`, dnsNames: ['w.example'] },
      c.algorithm,
    );
  }
  return c.count / ((performance.now() - start) / 1000);
}

async function opensslRate(c: Case, dir: string): Promise<number> {
  const ca = await createCa();
  const caCert = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  await writeFile(caCert, ca.certPem);
  await writeFile(caKey, ca.keyPem, { mode: 0o600 });
  const start = performance.now();
  for (let i = 0; i < c.count; i++) {
    await execFileAsync('openssl', [
      'req',
      '-x509',
      '-new',
      ...c.openssl,
      '-nodes',
      '-keyout',
      join(dir, 'leaf.key'),
      '-out',
      join(dir, 'leaf.crt'),
      '-subj',
      `/CN=w-${i}/O=Corral`,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-days',
      '90',
      '-addext',
      `subjectAltName=URI:urn:corral:role:agent,URI:urn:corral:host:h-${i},DNS:w.example`,
      '-addext',
      'extendedKeyUsage=serverAuth,clientAuth',
      '-addext',
      'basicConstraints=critical,CA:FALSE',
    ]);
  }
  return c.count / ((performance.now() - start) / 1000);
}

export async function run(_args: string[]): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'corral-bench-pki-'));
  try {
    const { stdout } = await execFileAsync('openssl', ['version']);
    console.log(`pki: certificates issued per second (key generation + signing), median of ${ROUNDS} rounds`);
    console.log(`node ${process.version}, ${stdout.trim()}`);
    console.log('');
    console.log('algorithm     corral/s   openssl-cli/s   ratio (corral/openssl)');
    for (const c of CASES) {
      const ours = median(await rounds(ROUNDS, () => corralRate(c)));
      const theirs = median(await rounds(ROUNDS, () => opensslRate(c, dir)));
      console.log(
        `${c.label.padEnd(12)}  ${fmt(ours).padStart(8)}   ${fmt(theirs).padStart(13)}   ${fmt(ours / theirs, 2).padStart(6)}x`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
