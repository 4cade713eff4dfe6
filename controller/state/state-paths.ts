import { join } from 'node:path';
import { STATE_MANIFEST_FILE } from '../../protocol/state-manifest.js';

/** Where everything lives under a controller state dir (all directories 0700, keys 0600). */
export interface StatePaths {
  readonly root: string;
  readonly caDir: string;
  readonly tlsDir: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly adminToken: string;
  readonly database: string;
  readonly runDir: string;
  /** `state-manifest.json`: which of the files above must exist (see state-files.ts). */
  readonly manifest: string;
}

export function statePaths(root: string): StatePaths {
  const tlsDir = join(root, 'tls');
  return {
    root,
    caDir: join(root, 'ca'),
    tlsDir,
    serverCert: join(tlsDir, 'controller.crt'),
    serverKey: join(tlsDir, 'controller.key'),
    clientCert: join(tlsDir, 'controller-client.crt'),
    clientKey: join(tlsDir, 'controller-client.key'),
    adminToken: join(root, 'admin-token'),
    database: join(root, 'corral.db'),
    runDir: join(root, 'run'),
    manifest: join(root, STATE_MANIFEST_FILE),
  };
}
