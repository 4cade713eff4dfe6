import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createCa, serverTlsOptions } from '../../pki/index.js';
import type { WipeReport } from '../../protocol/wipe.js';
import { reportAddresses, sendWipeReport } from './wipe-reporter.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** An https server on loopback port 0 that answers 200 and keeps each request body. */
async function controllerStandIn(tls: { caPem: string; certPem: string; keyPem: string }) {
  const bodies: string[] = [];
  const server = createServer(serverTlsOptions(tls), (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      bodies.push(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

const REPORT: WipeReport = {
  hostId: 'w1',
  stoppedServices: 2,
  stoppedDaemons: ['agent'],
  stoppedUnits: [],
  deletedPaths: 3,
  keptPaths: [],
  errors: [],
  finishedAt: '2026-01-01T00:00:00.000Z',
};

describe('wipe report (real TLS)', () => {
  it('fails over past a dead controller and one of another CA, to the next live one', async () => {
    const ca = await createCa({ commonName: 'wipe CA' });
    const issueController = (c: typeof ca) =>
      c.issue({ role: 'controller', commonName: 'controller', ipAddresses: ['127.0.0.1'] });
    const agent = await ca.issue({ role: 'agent', hostId: 'w1', commonName: 'w1' });
    const real = await issueController(ca);
    const live = await controllerStandIn({ caPem: ca.certPem, certPem: real.certPem, keyPem: real.keyPem });
    const other = await createCa({ commonName: 'other CA' });
    const fake = await issueController(other);
    const impostor = await controllerStandIn({
      caPem: other.certPem,
      certPem: fake.certPem,
      keyPem: fake.keyPem,
    });
    // A port nothing listens on any more: connections to it are refused.
    const gone = await controllerStandIn({ caPem: ca.certPem, certPem: real.certPem, keyPem: real.keyPem });
    await new Promise<void>((resolve) => servers.pop()?.close(() => resolve()));

    const target = {
      hostId: 'w1',
      controller: gone.address,
      controllers: [gone.address, impostor.address, live.address],
      caPem: ca.certPem,
      certPem: agent.certPem,
      keyPem: agent.keyPem,
    };
    expect(reportAddresses(target)).toEqual([gone.address, impostor.address, live.address]);
    const outcome = await sendWipeReport(target, REPORT);
    expect(outcome).toBe(`controller ${live.address} answered 200`);
    expect(live.bodies.map((b) => JSON.parse(b) as unknown)).toEqual([REPORT]);
    expect(impostor.bodies).toEqual([]);
  });
});
