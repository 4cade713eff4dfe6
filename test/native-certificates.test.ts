import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childrenOf, readDer } from '../pki/der-reader.js';
import {
  clientTlsOptions,
  createCa,
  createCsr,
  generateKeyPair,
  serverTlsOptions,
  signCsr,
  signLeaf,
  subjectKeyOf,
  verifyCsr,
  wholeSeconds,
  type KeyAlgorithm,
  type LeafProfile,
} from '../pki/index.js';
import type { JoinResponse, TokenCreateResponse } from '../protocol/enrollment.js';
import { heartbeatBody, postJson, startController, workerClient } from './controller-fixture.js';
import { importPair, referenceCa, referenceCsr, referenceLeaf } from './peculiar-reference.js';

/**
 * Certificates and requests built natively (DER template + node:crypto signature) against
 * the @peculiar/x509 path they replace, for the same keys, serials and validity windows:
 * the signed parts must be the same bytes, every field and extension @peculiar/x509 parses
 * must be equal, and `openssl verify` must accept each leaf against its CA. Then a join through
 * the API with requests made beforehand, whose certificates carry real mTLS handshakes.
 */

const execFileAsync = promisify(execFile);
let dir: string;
let files = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'corral-native-cert-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function pemFile(pem: string): Promise<string> {
  const path = join(dir, `${files++}.pem`);
  await writeFile(path, pem);
  return path;
}

/** The signed part of a certificate or request (the first element of its outer SEQUENCE). */
function signedPart(der: ArrayBuffer | Uint8Array): string {
  const [tbs] = childrenOf(readDer(new Uint8Array(der)));
  return Buffer.from(tbs?.bytes ?? []).toString('hex');
}

/** Everything @peculiar/x509 reads from a certificate but its signature value. */
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

async function opensslVerify(caPem: string, leafPem: string, extra: string[] = []): Promise<string> {
  const { stdout } = await execFileAsync('openssl', [
    'verify',
    '-x509_strict',
    ...extra,
    '-CAfile',
    await pemFile(caPem),
    await pemFile(leafPem),
  ]);
  return stdout.trim();
}

const purposeOf = (role: LeafProfile['role']): string[] =>
  role === 'controller-client' || role === 'operator' ? ['-purpose', 'sslclient'] : ['-purpose', 'sslserver'];

interface LeafCase {
  readonly name: string;
  readonly key: KeyAlgorithm;
  readonly profile: LeafProfile;
}

const FAR_2051 = new Date('2051-03-04T05:06:07.890Z');
const LEAVES: readonly LeafCase[] = [
  {
    name: 'agent, P-256, DNS names and IPv4 + IPv6',
    key: 'ecdsa-p256',
    profile: {
      role: 'agent',
      hostId: 'h-0123456789abcdef',
      commonName: 'web-1-agent',
      dnsNames: ['web-1.example.com', 'web-1'],
      ipAddresses: ['10.1.2.3', '2001:db8::1', '::1'],
    },
  },
  {
    name: 'updater, P-384, one IP',
    key: 'ecdsa-p384',
    profile: { role: 'updater', hostId: 'h-1', commonName: 'a', ipAddresses: ['127.0.0.1'] },
  },
  {
    name: 'controller, RSA 2048',
    key: 'rsa-2048',
    profile: {
      role: 'controller',
      commonName: 'corral-controller',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1', 'fe80::1:2:3:4'],
    },
  },
  {
    name: 'controller-client, a UTF-8 common name, no extra names',
    key: 'ecdsa-p256',
    profile: { role: 'controller-client', commonName: 'Ünï_code' },
  },
  {
    name: 'operator, DN specials in the common name',
    key: 'ecdsa-p256',
    profile: { role: 'operator', commonName: 'ops, team+1 "q" #x' },
  },
  {
    name: 'agent valid into 2051 (GeneralizedTime), 1-day window start',
    key: 'ecdsa-p256',
    profile: {
      role: 'agent',
      hostId: 'h-far',
      commonName: 'far',
      notBefore: new Date('2049-12-31T23:59:59.500Z'),
      notAfter: FAR_2051,
    },
  },
  {
    name: 'updater whose window closed in 2021',
    key: 'ecdsa-p256',
    profile: {
      role: 'updater',
      hostId: 'h-old',
      commonName: 'old',
      notBefore: new Date('2020-01-01T00:00:00Z'),
      notAfter: new Date('2021-01-01T00:00:00Z'),
    },
  },
];

describe.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'] as const)('native issuance under a %s CA', (caAlg) => {
  let ca: Awaited<ReturnType<typeof createCa>>;
  let reference: { cert: x509.X509Certificate; key: CryptoKey };

  beforeAll(async () => {
    ca = await createCa({ algorithm: caAlg, commonName: `Corral CA ${caAlg}` });
    const priv = createPrivateKey(ca.keyPem);
    const keys = await importPair(priv, createPublicKey(priv));
    const parsed = new x509.X509Certificate(ca.certPem);
    const refCert = await referenceCa(keys, {
      commonName: `Corral CA ${caAlg}`,
      serialHex: parsed.serialNumber,
      notBefore: parsed.notBefore,
      notAfter: parsed.notAfter,
    });
    reference = { cert: refCert, key: keys.privateKey };
  });

  it('makes the same CA certificate as @peculiar/x509, self-signed, accepted by openssl', async () => {
    const native = new x509.X509Certificate(ca.certPem);
    expect(signedPart(native.rawData)).toBe(signedPart(reference.cert.rawData));
    expect(fields(native)).toEqual(fields(reference.cert));
    expect(await native.verify({ publicKey: native.publicKey, signatureOnly: true })).toBe(true);
    expect(await opensslVerify(ca.certPem, ca.certPem)).toMatch(/: OK$/);
  });

  it.each(LEAVES)('issues $name byte for byte as before, and openssl verifies it', async (c) => {
    const keys = await generateKeyPair(c.key);
    const issued = await signLeaf(ca, subjectKeyOf(keys.publicKey), c.profile);
    const native = new x509.X509Certificate(issued.certPem);
    const before = await referenceLeaf(
      reference,
      (await importPair(keys.privateKey, keys.publicKey)).publicKey,
      {
        ...c.profile,
        serialHex: native.serialNumber,
        // The window asked for when there is one, so a wrong Time encoding cannot hide behind its own parse.
        notBefore: c.profile.notBefore ? wholeSeconds(c.profile.notBefore) : native.notBefore,
        notAfter: c.profile.notAfter ? wholeSeconds(c.profile.notAfter) : native.notAfter,
      },
    );
    expect(signedPart(native.rawData)).toBe(signedPart(before.rawData));
    expect(fields(native)).toEqual(fields(before));
    expect(await native.verify({ publicKey: reference.cert.publicKey, signatureOnly: true })).toBe(true);
    expect(new NodeX509(issued.certPem).verify(new NodeX509(ca.certPem).publicKey)).toBe(true);
    expect(new NodeX509(issued.certPem).fingerprint256.replace(/:/g, '').toLowerCase()).toBe(
      issued.fingerprint,
    );
    expect(issued.notAfter.toISOString()).toBe(native.notAfter.toISOString());
    // A window that is not open now (nor inside the CA's) is checked for all but time.
    const time = c.profile.notBefore ? ['-no_check_time'] : [];
    expect(await opensslVerify(ca.certPem, issued.certPem, [...purposeOf(c.profile.role), ...time])).toMatch(
      /: OK$/,
    );
  });

  it('signs a CSR made by openssl (RSA, and P-384 with SHA-384) as it signs its own', async () => {
    for (const [i, keyArgs] of [
      ['-newkey', 'rsa:2048'],
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384'],
    ].entries()) {
      const csrPath = join(dir, `openssl-${caAlg}-${i}.csr`);
      await execFileAsync('openssl', [
        'req',
        '-new',
        ...keyArgs,
        '-nodes',
        '-keyout',
        join(dir, `openssl-${caAlg}-${i}.key`),
        '-subj',
        '/CN=from-openssl/O=Someone Else',
        '-addext',
        'subjectAltName=DNS:evil.example',
        '-out',
        csrPath,
      ]);
      const { stdout: csrPem } = await execFileAsync('openssl', ['req', '-in', csrPath]);
      const issued = await signCsr(ca, csrPem, { role: 'agent', hostId: 'h-ossl', commonName: 'mine' });
      const cert = new x509.X509Certificate(issued.certPem);
      // The request's own names are ignored: the controller's profile decides.
      expect(cert.subject).toBe('CN=mine, O=Corral');
      expect(new NodeX509(issued.certPem).subjectAltName).toBe(
        'URI:urn:corral:role:agent, URI:urn:corral:host:h-ossl',
      );
      expect(await opensslVerify(ca.certPem, issued.certPem, ['-purpose', 'sslserver'])).toMatch(/: OK$/);
    }
  });
});

describe('native certificate requests', () => {
  it.each(['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'] as const)(
    'a %s request is the one @peculiar/x509 made for the same key, and openssl checks it',
    async (alg) => {
      const { csrPem, keyPem } = await createCsr('worker-7', alg);
      const priv = createPrivateKey(keyPem);
      const before = await referenceCsr(await importPair(priv, createPublicKey(priv)), 'worker-7');
      const native = new x509.Pkcs10CertificateRequest(csrPem);
      expect(signedPart(native.rawData)).toBe(signedPart(before.rawData));
      expect(native.subject).toBe(before.subject);
      expect(native.signatureAlgorithm).toEqual(before.signatureAlgorithm);
      expect(await native.verify()).toBe(true);
      const { stderr } = await execFileAsync('openssl', [
        'req',
        '-verify',
        '-noout',
        '-in',
        await pemFile(csrPem),
      ]);
      expect(stderr).toMatch(/verify OK/i);
      expect((await verifyCsr(csrPem)).spki.toString('hex')).toBe(
        Buffer.from(native.publicKey.rawData).toString('hex'),
      );
    },
  );

  it('reads a request @peculiar/x509 made (the old worker side) and keeps its key as sent', async () => {
    const keys = await generateKeyPair('ecdsa-p256');
    const old = await referenceCsr(await importPair(keys.privateKey, keys.publicKey), 'old-agent');
    const verified = await verifyCsr(old.toString('pem'));
    expect(verified.spki.toString('hex')).toBe(Buffer.from(old.publicKey.rawData).toString('hex'));
  });

  it('keeps a compressed EC point as the request sent it', async () => {
    const plain = join(dir, 'plain.key');
    const key = join(dir, 'compressed.key');
    await execFileAsync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', plain]);
    await execFileAsync('openssl', ['ec', '-in', plain, '-conv_form', 'compressed', '-out', key]);
    const { stdout: csrPem } = await execFileAsync('openssl', ['req', '-new', '-key', key, '-subj', '/CN=c']);
    const sent = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData);
    expect(sent.length).toBe(59); // 26 bytes of SPKI around a 33-byte point
    const ca = await createCa();
    const issued = await signCsr(ca, csrPem, { role: 'agent', hostId: 'h-c', commonName: 'c' });
    const cert = new x509.X509Certificate(issued.certPem);
    expect(Buffer.from(cert.publicKey.rawData).toString('hex')).toBe(sent.toString('hex'));
    expect(await opensslVerify(ca.certPem, issued.certPem)).toMatch(/: OK$/);
  });
});

describe('a join through the API with CSRs made beforehand', () => {
  it('issues certificates openssl verifies and that carry a heartbeat and an updater handshake over mTLS', async () => {
    await using t = await startController();
    const tok = (await t.admin<TokenCreateResponse>('POST', '/v1/tokens', { name: 'native-1' })).body;
    const agentCsr = await createCsr('anything');
    // The updater's request comes from openssl: RSA, another subject, its own SAN.
    const updaterKey = join(dir, 'join-updater.key');
    await execFileAsync('openssl', [
      'req',
      '-new',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      updaterKey,
      '-subj',
      '/CN=not-me',
      '-out',
      join(dir, 'join-updater.csr'),
    ]);
    const { stdout: updaterCsrPem } = await execFileAsync('openssl', [
      'req',
      '-in',
      join(dir, 'join-updater.csr'),
    ]);
    await using joinClient = workerClient(t.endpoints.join, { caPem: t.identity.ca.certPem });
    const res = await postJson(joinClient, '/v1/join', {
      token: tok.token,
      address: '127.0.0.1',
      sans: ['native-1.example'],
      agentCsrPem: agentCsr.csrPem,
      updaterCsrPem,
    });
    expect(res.status).toBe(200);
    const joined = res.body as unknown as JoinResponse;
    for (const [role, pem] of [
      ['agent', joined.agentCertPem],
      ['updater', joined.updaterCertPem],
    ] as const) {
      const cert = new x509.X509Certificate(pem);
      expect(cert.subject).toBe(`CN=native-1-${role}, O=Corral`);
      expect(new NodeX509(pem).subjectAltName).toBe(
        `URI:urn:corral:role:${role}, URI:urn:corral:host:${joined.hostId}, DNS:native-1.example, IP Address:127.0.0.1`,
      );
      expect(
        await cert.verify({
          publicKey: new x509.X509Certificate(joined.caPem).publicKey,
          signatureOnly: true,
        }),
      ).toBe(true);
      expect(await opensslVerify(joined.caPem, pem, ['-purpose', 'sslserver'])).toMatch(/: OK$/);
    }

    // The agent's certificate as a client: a heartbeat on the worker API, pin checked there.
    await using worker = workerClient(t.endpoints.worker, {
      caPem: joined.caPem,
      certPem: joined.agentCertPem,
      keyPem: agentCsr.keyPem,
    });
    expect((await postJson(worker, '/v1/heartbeat', heartbeatBody(joined.hostId))).status).toBe(200);

    // The updater's certificate as a server, called by the controller's client identity with its pin.
    const server = createServer(
      serverTlsOptions({
        caPem: joined.caPem,
        certPem: joined.updaterCertPem,
        keyPem: await readFile(updaterKey, 'utf8'),
      }),
      (socket) => socket.end('ok'),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const socket: TLSSocket = connect({
        host: '127.0.0.1',
        port: (server.address() as AddressInfo).port,
        ...clientTlsOptions(t.identity.client, {
          roles: ['updater'],
          fingerprints: [new NodeX509(joined.updaterCertPem).fingerprint256.replace(/:/g, '').toLowerCase()],
        }),
      });
      await once(socket, 'secureConnect');
      expect(socket.authorized).toBe(true);
      const [reply] = (await once(socket, 'data')) as [Buffer];
      expect(reply.toString()).toBe('ok');
      socket.destroy();
    } finally {
      server.close();
    }
  });
});
