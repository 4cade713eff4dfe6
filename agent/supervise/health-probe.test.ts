import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProbe } from './health-probe.js';

/** A service's HTTP health endpoint: `/ok` 200, `/redirect` 302, `/broken` 500, `/slow` never answers. */
let server: Server;
let base: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/slow') return;
    const status = req.url === '/ok' ? 200 : req.url === '/redirect' ? 302 : 500;
    res.writeHead(status, { location: '/ok' }).end('x'.repeat(200_000));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

const ctx = { cwd: '/', env: {}, signal: new AbortController().signal };
const http = (path: string, timeoutMs?: number) =>
  runProbe({ type: 'http', url: `${base}${path}`, ...(timeoutMs ? { timeoutMs } : {}) }, ctx);

describe('http health probe', () => {
  it('is healthy for 2xx and 3xx (the redirect is not followed), and names the status otherwise', async () => {
    expect(await http('/ok')).toBeUndefined();
    expect(await http('/redirect')).toBeUndefined();
    expect(await http('/broken')).toBe(`http ${base}/broken: status 500`);
  });

  it('reports a closed port and a service that does not answer in time', async () => {
    const closed = await runProbe({ type: 'http', url: 'http://127.0.0.1:1/' }, ctx);
    expect(closed).toMatch(/^probe failed: .*ECONNREFUSED/);
    expect(await http('/slow', 200)).toBe('probe timed out after 200 ms');
  });
});
