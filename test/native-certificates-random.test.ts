import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childrenOf, oidText, readDer, type DerNode } from '../pki/der-reader.js';
import {
  clientTlsOptions,
  createCa,
  createCsr,
  exportPrivateKeyPem,
  generateKeyPair,
  NOT_BEFORE_SKEW_MS,
  serverTlsOptions,
  signCsr,
  signLeaf,
  subjectKeyOf,
  verifyCsr,
  wholeSeconds,
  type KeyAlgorithm,
  type KeyPair,
  type LeafProfile,
  type Role,
} from '../pki/index.js';
import { importPair, referenceCa, referenceLeaf } from './peculiar-reference.js';

/**
 * The native issuer against the @peculiar/x509 one it replaced, on random profiles: random
 * roles, host ids, common names (PrintableString and UTF-8, DN specials), DNS names, IPv4 and
 * IPv6 addresses in every written form, validity windows from 1990 to 2120 (UTCTime and
 * GeneralizedTime) or in days from now, subject keys of every kind, through signLeaf and
 * through a CSR. For each certificate: the TBSCertificate is the reference's byte for byte
 * (same serial and window), every field @peculiar/x509 reads is equal, Node's X509Certificate
 * says the CA issued it and its signature verifies, and `openssl verify -x509_strict` accepts
 * it. Then real mutual-TLS handshakes between random leaves. The seed is in the suite's name;
 * CORRAL_TEST_SEED repeats a run.
 */

const CA_ALGORITHMS = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'] as const;
const CASES_PER_CA = 24;
const HANDSHAKES_PER_CA = 4;
const SEED = Number(process.env.CORRAL_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded generator, so a failing case can be made again. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const execFileAsync = promisify(execFile);
let dir: string;
let files = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-native-random-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function pemFile(pem: string): Promise<string> {
  const path = join(dir, `${files++}.pem`);
  await writeFile(path, pem);
  return path;
}

const signedPart = (der: ArrayBuffer | Uint8Array): string =>
  Buffer.from(childrenOf(readDer(new Uint8Array(der)))[0]?.bytes ?? []).toString('hex');

/** The subject's attributes as written, read with our own DER reader: one per RDN, in order. */
function subjectOf(der: ArrayBuffer): [string, string][] {
  const [tbs] = childrenOf(readDer(new Uint8Array(der)));
  const subject = childrenOf(tbs as DerNode)[5] as DerNode;
  return childrenOf(subject).map((rdn) => {
    const [attribute, ...more] = childrenOf(rdn);
    expect(more).toEqual([]);
    const [type, value] = childrenOf(attribute as DerNode) as [DerNode, DerNode];
    return [oidText(type), value.contents.toString(value.tag === 0x13 ? 'latin1' : 'utf8')];
  });
}

function fields(cert: x509.X509Certificate): Record<string, unknown> {
  return {
    serialNumber: cert.serialNumber,
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    signatureAlgorithm: cert.signatureAlgorithm,
    publicKey: Buffer.from(cert.publicKey.rawData).toString('hex'),
    extensions: cert.extensions.map((e) => ({
      type: e.type,
      critical: e.critical,
      value: Buffer.from(e.value).toString('hex'),
    })),
  };
}

const ROLES: readonly Role[] = ['controller', 'controller-client', 'agent', 'updater', 'operator'];
const SERVER_ROLES: readonly Role[] = ['controller', 'agent', 'updater'];
const CLIENT_ROLES: readonly Role[] = ['controller-client', 'agent', 'operator'];
const WORKER: readonly Role[] = ['agent', 'updater'];
/** Common names are drawn from one of these alphabets: PrintableString's, with the DN specials, or with UTF-8. */
const PRINTABLE_CHARS = [...`abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '()+,-./:=?`];
const SPECIAL_CHARS = [...PRINTABLE_CHARS, ...'_@!*&%;<>"#\\'];
const UTF8_CHARS = [...SPECIAL_CHARS, 'Ü', 'ï', 'ß', '日', '本', 'é', '🐄'];
const LABEL_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789-';

interface Draw {
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  chance(p: number): boolean;
}

function draws(next: () => number): Draw {
  return {
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
    chance: (p) => next() < p,
  };
}

function commonName(d: Draw): string {
  const alphabet = d.pick([PRINTABLE_CHARS, SPECIAL_CHARS, UTF8_CHARS]);
  const length = d.int(1, 40);
  let text = '';
  while ([...text].length < length) text += d.pick(alphabet);
  // The reference's DN parser trims a leading or trailing space, and reads an escaped backslash
  // before the separator as an escaped comma (`CN=a\\, O=Corral` is one CN to it): neither is
  // kept as written there, so neither is drawn. The native subject is read back below on its own.
  return text.replace(/^ +| +$/g, '').replace(/\\$/, '\\x') || 'x';
}

function dnsName(d: Draw): string {
  const labels = Array.from({ length: d.int(1, 4) }, () => {
    let label = d.pick([...'abcdefghijklmnopqrstuvwxyz']);
    for (let i = d.int(0, 14); i > 0; i--) label += d.pick([...LABEL_CHARS]);
    return label.replace(/-+$/, '');
  });
  return d.chance(0.1) ? `*.${labels.join('.')}` : labels.join('.');
}

function ipv4(d: Draw): string {
  return Array.from({ length: 4 }, () => d.int(0, 255)).join('.');
}

/** A random IPv6 address written full, with a zero run compressed (anywhere), or short. */
function ipv6(d: Draw): string {
  const groups = Array.from({ length: 8 }, () => (d.chance(0.35) ? 0 : d.int(0, 0xffff)));
  const hex = groups.map((g) => g.toString(16));
  if (d.chance(0.3)) return hex.join(':');
  const start = d.int(0, 7);
  const end = d.int(start, 7);
  for (let i = start; i <= end; i++) groups[i] = 0;
  const left = groups.slice(0, start).map((g) => g.toString(16));
  const right = groups.slice(end + 1).map((g) => g.toString(16));
  return `${left.join(':')}::${right.join(':')}`;
}

const hostId = (d: Draw): string =>
  d.pick(['h-', '']) + Array.from({ length: d.int(4, 20) }, () => d.pick([...'0123456789abcdef'])).join('');

/** Instants where the encoding changes (UTCTime up to 2049, GeneralizedTime from 2050), to the second. */
const EDGES_MS = [Date.UTC(2049, 11, 31, 23, 59, 59), Date.UTC(2050, 0, 1), Date.UTC(2050, 0, 1, 0, 0, 1)];

/**
 * A window in days from now (open), or anywhere from 1990 to 2120 (open now or not), an end
 * of it sometimes on an encoding edge.
 */
function window(d: Draw, openNow: boolean): Pick<LeafProfile, 'notBefore' | 'notAfter' | 'validityDays'> {
  if (openNow || d.chance(0.4)) return { validityDays: d.int(1, 3650) };
  const from = Date.UTC(1990, 0, 1);
  const to = Date.UTC(2120, 0, 1);
  let a = from + Math.floor(d.int(0, 1_000_000) * ((to - from - 86_400_000) / 1_000_000)) + d.int(0, 999);
  let b = Math.min(a + d.int(1, 40 * 365) * 86_400_000 + d.int(0, 86_399_999), to);
  if (d.chance(0.2)) a = d.pick(EDGES_MS);
  if (d.chance(0.2)) b = d.pick(EDGES_MS);
  return a < b
    ? { notBefore: new Date(a), notAfter: new Date(b) }
    : { notBefore: new Date(b), notAfter: new Date(a + 1000) };
}

function profile(d: Draw, role: Role, openNow = false): LeafProfile {
  const ips = Array.from({ length: d.int(0, 3) }, () => (d.chance(0.5) ? ipv4(d) : ipv6(d)));
  return {
    role,
    ...(WORKER.includes(role) ? { hostId: hostId(d) } : {}),
    commonName: commonName(d),
    dnsNames: Array.from({ length: d.int(0, 3) }, () => dnsName(d)),
    ipAddresses: ips,
    ...window(d, openNow),
  };
}

const openNow = (cert: NodeX509): boolean =>
  Date.parse(cert.validFrom) <= Date.now() && Date.now() < Date.parse(cert.validTo);

interface Issued {
  readonly profile: LeafProfile;
  readonly certPem: string;
  readonly keyPem: string;
}

describe.each(CA_ALGORITHMS)(`native issuance on random profiles (seed ${SEED}) under a %s CA`, (caAlg) => {
  const d = draws(generator(SEED + CA_ALGORITHMS.indexOf(caAlg)));
  let ca: Awaited<ReturnType<typeof createCa>>;
  let reference: { cert: x509.X509Certificate; key: CryptoKey };
  const keys: { alg: KeyAlgorithm; pair: KeyPair }[] = [];
  const issued: Issued[] = [];

  beforeAll(async () => {
    ca = await createCa({ algorithm: caAlg, commonName: `Random CA ${caAlg}` });
    const priv = createPrivateKey(ca.keyPem);
    const caKeys = await importPair(priv, createPublicKey(priv));
    const parsed = new x509.X509Certificate(ca.certPem);
    reference = {
      cert: await referenceCa(caKeys, {
        commonName: `Random CA ${caAlg}`,
        serialHex: parsed.serialNumber,
        notBefore: parsed.notBefore,
        notAfter: parsed.notAfter,
      }),
      key: caKeys.privateKey,
    };
    for (const alg of ['ecdsa-p256', 'ecdsa-p256', 'ecdsa-p384', 'rsa-2048'] as const) {
      keys.push({ alg, pair: await generateKeyPair(alg) });
    }
  });

  it(`issues ${CASES_PER_CA} random leaves byte for byte as @peculiar/x509 did, each issued and verified by the CA for node:crypto`, async () => {
    expect(signedPart(new x509.X509Certificate(ca.certPem).rawData)).toBe(signedPart(reference.cert.rawData));
    const caCert = new NodeX509(ca.certPem);
    for (let i = 0; i < CASES_PER_CA; i++) {
      const p = profile(d, d.pick(ROLES));
      const viaCsr = d.chance(0.5);
      let certPem: string;
      let keyPem: string;
      let publicKey: x509.PublicKey | CryptoKey;
      if (viaCsr) {
        const csr = await createCsr(commonName(d), d.pick(['ecdsa-p256', 'ecdsa-p384'] as const));
        ({ certPem } = await signCsr(ca, csr.csrPem, p));
        keyPem = csr.keyPem;
        const request = new x509.Pkcs10CertificateRequest(csr.csrPem);
        expect((await verifyCsr(csr.csrPem)).spki.toString('hex')).toBe(
          Buffer.from(request.publicKey.rawData).toString('hex'),
        );
        publicKey = request.publicKey;
      } else {
        const key = d.pick(keys).pair;
        ({ certPem } = await signLeaf(ca, subjectKeyOf(key.publicKey), p));
        keyPem = exportPrivateKeyPem(key.privateKey);
        publicKey = (await importPair(key.privateKey, key.publicKey)).publicKey;
      }
      const native = new x509.X509Certificate(certPem);
      const what = `case ${i} (${viaCsr ? 'CSR' : 'key'}): ${JSON.stringify(p)}`;
      // The reference gets the window asked for (whole seconds), not the one read back, so a
      // wrong Time encoding cannot hide behind its own parse; a window in days is checked by its span.
      if (p.validityDays !== undefined) {
        expect(native.notAfter.getTime() - native.notBefore.getTime(), what).toBe(
          p.validityDays * 86_400_000 + NOT_BEFORE_SKEW_MS,
        );
      }
      const before = await referenceLeaf(reference, publicKey, {
        ...p,
        serialHex: native.serialNumber,
        notBefore: p.notBefore ? wholeSeconds(p.notBefore) : native.notBefore,
        notAfter: p.notAfter ? wholeSeconds(p.notAfter) : native.notAfter,
      });
      expect(subjectOf(native.rawData), what).toEqual([
        ['2.5.4.3', p.commonName],
        ['2.5.4.10', 'Corral'],
      ]);
      expect(signedPart(native.rawData), what).toBe(signedPart(before.rawData));
      expect(fields(native), what).toEqual(fields(before));
      const cert = new NodeX509(certPem);
      expect(cert.checkIssued(caCert), what).toBe(true);
      expect(cert.verify(caCert.publicKey), what).toBe(true);
      expect(await native.verify({ publicKey: reference.cert.publicKey, signatureOnly: true }), what).toBe(
        true,
      );
      issued.push({ profile: p, certPem, keyPem });
    }
  });

  it('has every random leaf accepted by openssl verify -x509_strict for its role', async () => {
    expect(issued).toHaveLength(CASES_PER_CA);
    const caFile = await pemFile(ca.certPem);
    for (const purpose of ['sslserver', 'sslclient'] as const) {
      const roles = purpose === 'sslserver' ? SERVER_ROLES : CLIENT_ROLES;
      for (const open of [true, false]) {
        const batch = issued.filter(
          (c) => roles.includes(c.profile.role) && openNow(new NodeX509(c.certPem)) === open,
        );
        if (batch.length === 0) continue;
        const paths = await Promise.all(batch.map((c) => pemFile(c.certPem)));
        const { stdout } = await execFileAsync('openssl', [
          'verify',
          '-x509_strict',
          '-purpose',
          purpose,
          // A window that is not open now is checked for everything but time.
          ...(open ? [] : ['-no_check_time']),
          '-CAfile',
          caFile,
          ...paths,
        ]);
        expect(stdout.trim().split('\n')).toEqual(paths.map((p) => `${p}: OK`));
      }
    }
  });

  it(`carries ${HANDSHAKES_PER_CA} mutual-TLS handshakes between random leaves, role and pin checked`, async () => {
    const usable = (roles: readonly Role[]): Issued[] =>
      issued.filter((c) => roles.includes(c.profile.role) && openNow(new NodeX509(c.certPem)));
    // Leaves made here when the random ones leave no open window of a role.
    const fallback = async (role: Role): Promise<Issued> => {
      const key = await generateKeyPair('ecdsa-p256');
      const p = profile(d, role, true);
      const { certPem } = await signLeaf(ca, subjectKeyOf(key.publicKey), p);
      return { profile: p, certPem, keyPem: exportPrivateKeyPem(key.privateKey) };
    };
    for (let i = 0; i < HANDSHAKES_PER_CA; i++) {
      const servers = usable(SERVER_ROLES);
      const clients = usable(CLIENT_ROLES);
      const server = servers.length > 0 ? d.pick(servers) : await fallback('agent');
      const client = clients.length > 0 ? d.pick(clients) : await fallback('operator');
      const listener = createServer(
        serverTlsOptions({ caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem }),
        (socket) => socket.end(socket.getPeerX509Certificate()?.fingerprint256 ?? 'none'),
      );
      listener.listen(0, '127.0.0.1');
      await once(listener, 'listening');
      try {
        const socket: TLSSocket = connect({
          host: '127.0.0.1',
          port: (listener.address() as AddressInfo).port,
          ...clientTlsOptions(
            { caPem: ca.certPem, certPem: client.certPem, keyPem: client.keyPem },
            {
              roles: [server.profile.role],
              fingerprints: [new NodeX509(server.certPem).fingerprint256.replace(/:/g, '').toLowerCase()],
            },
          ),
        });
        await once(socket, 'secureConnect');
        expect(socket.authorized).toBe(true);
        const [reply] = (await once(socket, 'data')) as [Buffer];
        // The server saw the client's certificate: the random leaf authenticated both ways.
        expect(reply.toString()).toBe(new NodeX509(client.certPem).fingerprint256);
        socket.destroy();
      } finally {
        listener.close();
      }
    }
  });
});
