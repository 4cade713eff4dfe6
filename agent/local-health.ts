import { chmod, unlink } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { AGENT_LOCAL_HEALTH_PATH, type AgentLocalHealth } from '../protocol/agent-local.js';
import { errorEnvelope, ErrorCode } from '../protocol/errors.js';

/**
 * The local health channel for the updater on this worker: plain HTTP on a Unix socket with
 * mode 0600 (only the same user reaches it), answering GET /v1/health. Nothing else.
 */
export interface LocalHealthServer {
  readonly path: string;
  /** Stops listening and removes the socket; a second call waits for the same. */
  close(): Promise<void>;
}

export async function startLocalHealth(
  path: string,
  health: () => AgentLocalHealth,
): Promise<LocalHealthServer> {
  // The instance lock is held, so a socket file left here belongs to a dead agent.
  await unlink(path).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  });
  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    req.resume();
    if (req.method === 'GET' && req.url === AGENT_LOCAL_HEALTH_PATH) send(200, health());
    else send(404, errorEnvelope(ErrorCode.NOT_FOUND, 'no such route'));
  });
  server.maxConnections = 16;
  server.listen(path);
  await once(server, 'listening');
  await chmod(path, 0o600);
  let closing: Promise<void> | undefined;
  return {
    path,
    close() {
      closing ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await unlink(path).catch(() => undefined /* ENOENT: server.close removed it */);
      })();
      return closing;
    },
  };
}
