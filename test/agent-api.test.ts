import { readFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../agent/index.js';
import type { AgentStatus, ApplyAccepted } from '../protocol/agent-api.js';
import { ErrorCode } from '../protocol/errors.js';
import { PkiErrorCode } from '../pki/index.js';
import { readEndpointsFile } from '../kit/endpoints-file.js';
import {
  agentCaller,
  killServices,
  makePki,
  makeWorker,
  sh,
  startAgent,
  waitFor,
  type TestPki,
  type TestWorker,
} from './agent-fixture.js';

let pki: TestPki;
let worker: TestWorker;
let agent: Agent;
let controller: ReturnType<typeof agentCaller>;

beforeAll(async () => {
  pki = await makePki();
  worker = await makeWorker(pki, '127.0.0.1:9', { hostId: 'api-1' });
  agent = await startAgent(worker);
  controller = agentCaller(agent.address, pki.controllerClient, worker.agentFingerprint);
});

afterAll(async () => {
  await controller?.close();
  await agent?.close();
  await killServices(worker.stateDir);
  await rm(worker.stateDir, { recursive: true, force: true });
});

const status = async () => (await controller.call<AgentStatus>('GET', '/v1/status')).body;

describe('agent API', () => {
  it('reports health and writes the bound address to run/endpoints.json', async () => {
    const res = await controller.call<{ version: string; hostId: string }>('GET', '/v1/health');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ version: '9.9.9-test', hostId: 'api-1' });
    expect(await readEndpointsFile(worker.stateDir)).toEqual({ agent: agent.address });
  });

  it('answers the updater on the local health socket', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        { socketPath: join(worker.stateDir, 'run/agent.sock'), path: '/v1/health' },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(JSON.parse(body)).toMatchObject({ version: '9.9.9-test', pid: process.pid });
  });

  it('applies a desired set, resolves host variables on the worker, and logs service output as RFC 5424', async () => {
    const res = await controller.call<ApplyAccepted>('POST', '/v1/apply', {
      generation: 1,
      services: [
        sh('echo-host', 'echo "name=$HN id=$HI addr=$HA"; exec sleep 300', {
          env: { HN: '${host.name}', HI: '${host.id}', HA: '${host.address}' },
        }),
        sh('sleeper', 'exec sleep 300'),
      ],
    });
    expect(res.status).toBe(202);
    expect(res.body.noop).toBe(false);
    const s = await waitFor('both running', async () => {
      const st = await status();
      return st.services.length === 2 && st.services.every((x) => x.state === 'running') ? st : undefined;
    });
    expect(s.generation).toBe(1);
    expect(s.services.every((x) => x.pid !== null)).toBe(true);
    const line = await waitFor('output in the worker log', async () => {
      const log = await readFile(join(worker.stateDir, 'logs/worker.log'), 'utf8').catch(() => '');
      return log.split('\n').find((l) => l.includes('echo-host'));
    });
    expect(line).toMatch(
      /^<14>1 \d{4}-\d\d-\d\dT[\d:.]+Z worker-api-1 echo-host (?:\d+|-) stdout - name=worker-api-1 id=api-1 addr=127\.0\.0\.1$/,
    );
  });

  it('treats the same generation as a no-op and refuses an older or conflicting one', async () => {
    const same = await controller.call<ApplyAccepted>('POST', '/v1/apply', {
      generation: 1,
      services: [
        sh('echo-host', 'echo "name=$HN id=$HI addr=$HA"; exec sleep 300', {
          env: { HN: '${host.name}', HI: '${host.id}', HA: '${host.address}' },
        }),
        sh('sleeper', 'exec sleep 300'),
      ],
    });
    expect(same.status).toBe(202);
    expect(same.body.noop).toBe(true);
    const conflicting = await controller.call<{ error: { code: string } }>('POST', '/v1/apply', {
      generation: 1,
      services: [],
    });
    expect(conflicting.status).toBe(409);
    expect(conflicting.body.error.code).toBe(ErrorCode.CONFLICT);
    const older = await controller.call<{ error: { code: string } }>('POST', '/v1/apply', {
      generation: 0,
      services: [],
    });
    expect(older.status).toBe(400); // generation starts at 1: 0 is not even valid
    await agent.idle();
    const two = await controller.call('POST', '/v1/apply', {
      generation: 5,
      services: [sh('sleeper', 'exec sleep 300')],
    });
    expect(two.status).toBe(202);
    const stale = await controller.call<{ error: { code: string } }>('POST', '/v1/apply', {
      generation: 4,
      services: [],
    });
    expect(stale.status).toBe(409);
    expect(stale.body.error.code).toBe(ErrorCode.STALE_GENERATION);
    await waitFor(
      'echo-host removed',
      async () => (await status()).services.map((x) => x.name).join() === 'sleeper',
    );
  });

  it('names the field of an unknown host variable and changes nothing', async () => {
    const res = await controller.call<{ error: { code: string; message: string } }>('POST', '/v1/apply', {
      generation: 6,
      services: [sh('bad', 'true', { env: { PORT: '${host.port}' } })],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(ErrorCode.VALIDATION);
    expect(res.body.error.message).toContain('body/services/0/env/PORT');
    expect(res.body.error.message).toContain('${host.port}');
    expect((await status()).generation).toBe(5);
  });

  it('refuses malformed specs with the field named', async () => {
    const res = await controller.call<{ error: { code: string; message: string } }>('POST', '/v1/apply', {
      generation: 6,
      services: [{ ...sh('x', 'true'), restart: 'sometimes' }],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain('/services/0');
  });

  it('names the allowed runtimes, and the field of the runtime named, for a spec of the wrong shape', async () => {
    const call = (service: unknown) =>
      controller.call<{ error: { code: string; message: string } }>('POST', '/v1/apply', {
        generation: 6,
        services: [service],
      });
    const vm = await call({ ...sh('x', 'true'), runtime: 'vm' });
    expect(vm.status).toBe(400);
    expect(vm.body.error.message).toBe(
      'body: /services/0/runtime: must be one of process, container (got "vm")',
    );
    const noImage = await call({ name: 'c', runtime: 'container', env: {}, restart: 'always' });
    expect(noImage.status).toBe(400);
    expect(noImage.body.error.message).toMatch(/^body: \/services\/0\/image: /);
    const badPort = await call({
      name: 'c',
      runtime: 'container',
      image: 'busybox',
      env: {},
      restart: 'always',
      ports: ['80'],
    });
    expect(badPort.body.error.message).toMatch(/^body: \/services\/0\/ports\/0: /);
    expect((await status()).generation).toBe(5);
  });

  it('runs only allow-listed diagnostics', async () => {
    const unknown = await controller.call<{ error: { code: string } }>('POST', '/v1/diagnostics', {
      kind: 'shell',
    });
    expect(unknown.status).toBe(403);
    expect(unknown.body.error.code).toBe(ErrorCode.FORBIDDEN);
    const mem = await controller.call<{ kind: string; totalBytes: number }>('POST', '/v1/diagnostics', {
      kind: 'memory',
    });
    expect(mem.status).toBe(200);
    expect(mem.body.totalBytes).toBeGreaterThan(0);
    const procs = await controller.call<{ top: { service: string | null }[] }>('POST', '/v1/diagnostics', {
      kind: 'processes',
    });
    expect(procs.status).toBe(200);
    const tail = await controller.call<{ stdout: string[] }>('POST', '/v1/diagnostics', {
      kind: 'log-tail',
      service: 'sleeper',
    });
    expect(tail.status).toBe(200);
    const missing = await controller.call('POST', '/v1/diagnostics', { kind: 'log-tail', service: 'nope' });
    expect(missing.status).toBe(404);
  });

  it('has no OpenAPI or docs routes', async () => {
    for (const path of ['/documentation', '/docs', '/openapi.json', '/documentation/json']) {
      expect((await controller.call('GET', path)).status).toBe(404);
    }
  });

  it('gives 403 to any identity but the pinned controller client', async () => {
    const callers = {
      'another worker': await pki.issue('agent', 'other-host'),
      operator: await pki.issue('operator'),
      'unpinned controller-client': await pki.issue('controller-client'),
    };
    for (const [who, material] of Object.entries(callers)) {
      const c = agentCaller(agent.address, material, worker.agentFingerprint);
      try {
        for (const [method, path] of [
          ['GET', '/v1/status'],
          ['POST', '/v1/apply'],
          ['POST', '/v1/self-destruct'],
          ['GET', '/no-such-route'],
        ] as const) {
          const res = await c.call<{ error: { code: string } }>(
            method,
            path,
            method === 'POST' ? {} : undefined,
          );
          expect({ who, path, status: res.status, code: res.body.error.code }).toEqual({
            who,
            path,
            status: 403,
            code: who === 'unpinned controller-client' ? PkiErrorCode.PIN_MISMATCH : ErrorCode.FORBIDDEN,
          });
        }
      } finally {
        await c.close();
      }
    }
  });

  it('refuses an updater certificate before any request is read', async () => {
    // pki issues updater certificates for serverAuth only, so the TLS layer already refuses
    // one presented as a client certificate: the request never reaches a route.
    const c = agentCaller(agent.address, await pki.issue('updater', 'api-1'), worker.agentFingerprint);
    try {
      await expect(c.call('GET', '/v1/status')).rejects.toThrow();
      await expect(c.call('POST', '/v1/self-destruct', {})).rejects.toThrow();
    } finally {
      await c.close();
    }
    expect((await controller.call('GET', '/v1/health')).status).toBe(200);
  });

  it('tears down one service by name and refuses an unknown one', async () => {
    const missing = await controller.call('POST', '/v1/teardown', { service: 'nope' });
    expect(missing.status).toBe(404);
    const res = await controller.call<{ stopped: string[] }>('POST', '/v1/teardown', { service: 'sleeper' });
    expect(res.status).toBe(202);
    expect(res.body.stopped).toEqual(['sleeper']);
    await waitFor('no services left', async () => (await status()).services.length === 0);
  });
});
