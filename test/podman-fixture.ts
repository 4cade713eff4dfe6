import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Where Debian's busybox-static puts its one binary. */
const BUSYBOX = '/bin/busybox';
/** The image every container test runs: a busybox-static rootfs imported offline (never pulled). */
export const TEST_IMAGE = 'localhost/corral-busybox:test';
/** Applets linked into the image, so specs can name them directly. */
const APPLETS = ['sh', 'sleep', 'echo', 'cat', 'nc', 'httpd', 'true', 'false', 'kill', 'ls', 'id', 'wc'];

/**
 * Why podman cannot run here, or undefined when it can: container tests skip with this reason
 * (and only for it). Root is needed: the engine runs rootful with a private store.
 */
export async function podmanUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'podman runs rootful in these tests, and this is not root';
  try {
    await execFileAsync('podman', ['--version'], { timeout: 10_000 });
  } catch {
    return 'podman is not installed (apt-get install podman runc busybox-static)';
  }
  try {
    await access(BUSYBOX);
  } catch {
    return `${BUSYBOX} is missing (apt-get install busybox-static)`;
  }
  return undefined;
}

export interface Podman {
  /** The private engine's API socket (give it to the agent as its container socket). */
  readonly socket: string;
  readonly dir: string;
  /** Runs the podman CLI on the private store; resolves with stdout. */
  cli(args: readonly string[]): Promise<string>;
  /** Ids of running containers in the private store carrying `label` (`key=value`), or all. */
  running(label?: string): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * A private podman engine: its own containers.conf (no default ulimits, runc, cgroupfs), vfs
 * storage, store and run dirs in a temp dir (never the machine's default store), serving the
 * Docker-compatible API on a socket in that dir, with TEST_IMAGE imported from a busybox rootfs.
 */
export async function startPodman(): Promise<Podman> {
  // Short: the socket path must fit in sun_path.
  const dir = await mkdtemp('/tmp/corral-pod-');
  const root = join(dir, 'root');
  const runroot = join(dir, 'run');
  const tmp = join(dir, 'tmp');
  await Promise.all([root, runroot, tmp].map((d) => mkdir(d, { recursive: true })));
  await writeFile(
    join(dir, 'containers.conf'),
    [
      '[containers]',
      'default_ulimits = []',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = "${join(dir, 'events.log')}"`,
      '',
    ].join('\n'),
  );
  await writeFile(
    join(dir, 'storage.conf'),
    ['[storage]', 'driver = "vfs"', `graphroot = "${root}"`, `runroot = "${runroot}"`, ''].join('\n'),
  );
  const env = {
    ...process.env,
    CONTAINERS_CONF: join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
    TMPDIR: tmp,
  };
  const flags = ['--root', root, '--runroot', runroot, '--storage-driver', 'vfs', '--tmpdir', tmp];
  const cli = async (args: readonly string[]): Promise<string> =>
    (await execFileAsync('podman', [...flags, ...args], { env, timeout: 120_000, maxBuffer: 16 << 20 }))
      .stdout;

  // The image: busybox and its applets, imported from a tar stream.
  const rootfs = join(dir, 'rootfs');
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  for (const applet of APPLETS) await symlink('busybox', join(rootfs, 'bin', applet));
  await new Promise<void>((resolve, reject) => {
    const tar = spawn('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const imp = spawn('podman', [...flags, 'import', '--change', 'ENV PATH=/bin', '-', TEST_IMAGE], {
      env,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let err = '';
    imp.stderr.on('data', (d: Buffer) => (err += d.toString()));
    tar.stdout.pipe(imp.stdin);
    imp.once('error', reject);
    imp.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`podman import: ${err}`))));
  });

  const socket = join(dir, 'podman.sock');
  const service: ChildProcess = spawn(
    'podman',
    [...flags, 'system', 'service', '--time=0', `unix://${socket}`],
    {
      env,
      stdio: ['ignore', 'ignore', 'ignore'],
    },
  );
  const ping = (): Promise<boolean> =>
    new Promise((resolve) => {
      const req = request({ socketPath: socket, path: '/_ping', timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.end();
    });
  const deadline = Date.now() + 60_000;
  while (!(await ping())) {
    if (service.exitCode !== null || Date.now() > deadline) {
      service.kill('SIGKILL');
      throw new Error(`podman system service did not come up on ${socket}`);
    }
    await sleep(100);
  }

  const running = async (label?: string): Promise<string[]> =>
    (await cli(['ps', '-q', '--no-trunc', ...(label ? ['--filter', `label=${label}`] : [])]))
      .split('\n')
      .filter(Boolean);

  return {
    socket,
    dir,
    cli,
    running,
    async close() {
      await cli(['rm', '--all', '--force', '--time', '0']).catch(() => undefined /* none left */);
      if (service.exitCode === null) {
        service.kill('SIGTERM');
        await Promise.race([new Promise((r) => service.once('exit', r)), sleep(10_000)]);
        if (service.exitCode === null) service.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true }).catch(() => undefined /* busy mounts: left in /tmp */);
    },
  };
}
