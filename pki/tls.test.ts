import { once } from 'node:events';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCa, type CertificateAuthority } from './ca.js';
import { isPkiError, PkiErrorCode } from './errors.js';
import { fingerprintPem } from './fingerprint.js';
import { peerIdentity, requirePeer, type PeerIdentity } from './identity.js';
import type { Role } from './roles.js';
import { clientTlsOptions, serverTlsOptions, type TlsMaterial } from './tls-options.js';

let ca: CertificateAuthority & { keyPem: string };
let otherCa: CertificateAuthority & { keyPem: string };
let serverMaterial: TlsMaterial;

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

beforeAll(async () => {
  [ca, otherCa] = await Promise.all([createCa(), createCa({ commonName: 'Impostor CA' })]);
  const server = await ca.issue({
    role: 'controller',
    commonName: 'controller',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  serverMaterial = { caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem };
});

interface Seen {
  readonly port: number;
  /** Each accepted connection's verdict: the identity, or the coded error. */
  readonly verdicts: Promise<PeerIdentity | string>[];
}

/** A real mTLS server that checks every client against `accept` and answers with its verdict. */
async function startServer(accept: readonly Role[]): Promise<Seen> {
  const verdicts: Promise<PeerIdentity | string>[] = [];
  const server = createServer(serverTlsOptions(serverMaterial), (socket: TLSSocket) => {
    verdicts.push(
      Promise.resolve().then(() => {
        try {
          const id = requirePeer(peerIdentity(socket), { roles: accept });
          socket.end(`ok ${id.role ?? ''} ${id.hostId ?? '-'} ${id.fingerprint}\n`);
          return id;
        } catch (e: unknown) {
          socket.end(`refused ${isPkiError(e) ? e.code : 'unknown'}\n`);
          return isPkiError(e) ? e.code : 'unknown';
        }
      }),
    );
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, verdicts };
}

/** Connects and resolves with the server's one-line answer, or rejects with the TLS error. */
function talk(
  port: number,
  material: Partial<TlsMaterial>,
  pin?: { roles: Role[]; fingerprints?: string[] },
) {
  return new Promise<{ line: string; server: PeerIdentity | undefined }>((resolve, reject) => {
    const base = clientTlsOptions(
      { caPem: material.caPem ?? ca.certPem, certPem: material.certPem ?? '', keyPem: material.keyPem ?? '' },
      pin ?? { roles: ['controller'] },
    );
    const options = { ...base, host: '127.0.0.1', port, servername: 'localhost' };
    if (!material.certPem) {
      delete (options as { cert?: string }).cert;
      delete (options as { key?: string }).key;
    }
    const socket = connect(options);
    let data = '';
    let server: PeerIdentity | undefined;
    socket.on('secureConnect', () => {
      server = peerIdentity(socket);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () =>
      data ? resolve({ line: data.trim(), server }) : reject(new Error('closed without answer')),
    );
    socket.on('error', reject);
  });
}

describe('mutual TLS with Corral certificates', () => {
  it('completes between two leaves of one CA and each side reads the other', async () => {
    const srv = await startServer(['agent']);
    const agent = await ca.issue({ role: 'agent', hostId: 'h-7', commonName: 'web-7' });
    const { line, server } = await talk(srv.port, { certPem: agent.certPem, keyPem: agent.keyPem });
    expect(line).toBe(`ok agent h-7 ${agent.fingerprint}`);
    expect(server).toMatchObject({ role: 'controller', hostId: undefined });
    const seen = await srv.verdicts[0];
    expect(seen).toMatchObject({ role: 'agent', hostId: 'h-7', fingerprint: agent.fingerprint });
  });

  it('refuses a client certificate from another CA at the handshake', async () => {
    const srv = await startServer(['agent']);
    const impostor = await otherCa.issue({ role: 'agent', hostId: 'h-7', commonName: 'web-7' });
    await expect(talk(srv.port, { certPem: impostor.certPem, keyPem: impostor.keyPem })).rejects.toThrow();
    expect(srv.verdicts).toHaveLength(0);
  });

  it('refuses a client with no certificate at the handshake', async () => {
    const srv = await startServer(['agent']);
    await expect(talk(srv.port, {})).rejects.toThrow();
    expect(srv.verdicts).toHaveLength(0);
  });

  it('refuses an expired client certificate at the handshake', async () => {
    const srv = await startServer(['agent']);
    const expired = await ca.issue({
      role: 'agent',
      hostId: 'h-7',
      commonName: 'web-7',
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    await expect(talk(srv.port, { certPem: expired.certPem, keyPem: expired.keyPem })).rejects.toThrow();
    expect(srv.verdicts).toHaveLength(0);
  });

  it('refuses a valid certificate of a role the server does not accept', async () => {
    const srv = await startServer(['agent']);
    const operator = await ca.issue({ role: 'operator', commonName: 'ops' });
    const { line } = await talk(srv.port, { certPem: operator.certPem, keyPem: operator.keyPem });
    expect(line).toBe(`refused ${PkiErrorCode.PEER_ROLE}`);
    expect(await srv.verdicts[0]).toBe(PkiErrorCode.PEER_ROLE);
  });

  it('refuses a peer whose fingerprint is not the pinned one', () => {
    const id: PeerIdentity = {
      role: 'agent',
      hostId: 'h-1',
      fingerprint: 'a'.repeat(64),
      notAfter: new Date(),
      subject: 'CN=x',
    };
    expect(() => requirePeer(id, { roles: ['agent'], fingerprints: ['b'.repeat(64)] })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.PIN_MISMATCH }),
    );
    expect(requirePeer(id, { roles: ['agent'], fingerprints: [id.fingerprint] })).toBe(id);
  });

  it('client refuses a server of the wrong role or with an unpinned fingerprint', async () => {
    const srv = await startServer(['agent']);
    const agent = await ca.issue({ role: 'agent', hostId: 'h-7', commonName: 'web-7' });
    const creds = { certPem: agent.certPem, keyPem: agent.keyPem };
    await expect(talk(srv.port, creds, { roles: ['updater'] })).rejects.toMatchObject({
      code: PkiErrorCode.PEER_ROLE,
    });
    await expect(
      talk(srv.port, creds, { roles: ['controller'], fingerprints: ['0'.repeat(64)] }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.PIN_MISMATCH,
    });
    const server = await talk(srv.port, creds, {
      roles: ['controller'],
      fingerprints: [fingerprintPem(serverMaterial.certPem)],
    });
    expect(server.line).toMatch(/^ok agent/);
  });

  it('client refuses a server certificate from another CA', async () => {
    const srv = await startServer(['agent']);
    const agent = await otherCa.issue({ role: 'agent', hostId: 'h-7', commonName: 'web-7' });
    await expect(
      talk(srv.port, { caPem: otherCa.certPem, certPem: agent.certPem, keyPem: agent.keyPem }),
    ).rejects.toThrow();
  });
});
