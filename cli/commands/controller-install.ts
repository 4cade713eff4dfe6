import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { writeFileAtomic } from '../../pki/index.js';
import { readEndpointsFile } from '../../kit/endpoints-file.js';
import { renderControllerConfig } from '../config/controller-config.js';
import { durationFlag } from '../config/worker-config.js';
import { CliExit, EXIT_FAILURE } from '../exit.js';
import { runningRelease } from '../installation.js';
import { CONTROLLER_UNIT, controllerUnit, pid1IsSystemd } from '../install/systemd-units.js';
import { renderJson, renderRecord, type Output } from '../output.js';
import { livePidFile } from '../../kit/pid-file.js';

export const DEFAULT_CONTROLLER_STATE_DIR = '/var/lib/corral-controller';
export const CONTROLLER_CONFIG_FILE = 'controller.yaml';
const CONTROLLER_LOG_FILE = 'logs/controller.log';

interface Options {
  prefix?: string;
  stateDir?: string;
  configDir?: string;
  address: string[];
  adminListen: string;
  workerListen: string;
  systemd: boolean;
  wait: string;
  json?: boolean;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
const exists = (p: string): Promise<boolean> =>
  stat(p).then(
    () => true,
    () => false /* ENOENT */,
  );

async function controllerInstall(o: Options, systemdFlag: boolean, io: Output): Promise<void> {
  const prefix = resolve(o.prefix ?? '/opt/corral');
  const stateDir = resolve(o.stateDir ?? DEFAULT_CONTROLLER_STATE_DIR);
  const configDir = resolve(o.configDir ?? '/etc/corral');
  const waitMs = durationFlag('--wait', o.wait);
  const systemd = systemdFlag ? o.systemd : await pid1IsSystemd();
  // Loaded here, not with the controller group: `controller --help` stays quick.
  const { initControllerState } = await import('../../controller/index.js');
  const { installKillPoint } = await import('../install/kill-points.js');
  const { installUnits, pollFor, startDetached } = await import('../install/node-start.js');
  const { installReleaseZero } = await import('../install/release-zero.js');
  const init = await initControllerState({ stateDir, addresses: o.address });
  const done: string[] =
    init.created.length > 0 ? [`initialized ${stateDir} (${init.created.join(', ')})`] : [];

  const running = runningRelease();
  const zero = await installReleaseZero({
    root: running.root,
    prefix,
    version: running.version ?? running.packageVersion,
    createdBy: 'corral controller install',
  });
  done.push(...zero.done);

  const configFile = join(configDir, CONTROLLER_CONFIG_FILE);
  if (!(await exists(configFile))) {
    await mkdir(configDir, { recursive: true, mode: 0o755 });
    await writeFileAtomic(
      configFile,
      renderControllerConfig({ stateDir, adminListen: o.adminListen, workerListen: o.workerListen }),
      0o644,
    );
    done.push(`wrote ${configFile}`);
  }
  installKillPoint('config');

  if (systemd) {
    await installUnits({ [CONTROLLER_UNIT]: controllerUnit({ node: process.execPath, prefix, configFile }) });
    done.push(`enabled and started ${CONTROLLER_UNIT}`);
  } else if ((await livePidFile(stateDir, 'controller', { command: true })) === undefined) {
    const pid = await startDetached({
      node: process.execPath,
      args: [join(prefix, 'current', 'bin', 'corral.js'), 'controller', 'serve', '--config', configFile],
      logFile: join(stateDir, CONTROLLER_LOG_FILE),
      cwd: stateDir,
    });
    done.push(`started the controller (pid ${pid})`);
  }
  const endpoints = await pollFor(async () => {
    const e = await readEndpointsFile(stateDir).catch(() => undefined /* half-written: again */);
    const running = await livePidFile(stateDir, 'controller', { command: true });
    return e?.admin !== undefined && e.worker !== undefined && (systemd || running !== undefined)
      ? e
      : undefined;
  }, waitMs);
  if (!endpoints)
    throw new CliExit(
      EXIT_FAILURE,
      `installed, but the controller did not come up within ${o.wait}: see ${join(stateDir, CONTROLLER_LOG_FILE)}`,
    );
  const view = {
    changed: done.length > 0,
    done,
    version: zero.version,
    stateDir,
    config: configFile,
    caPin: `sha256:${init.caFingerprint}`,
    admin: endpoints.admin,
    worker: endpoints.worker,
    join: endpoints.join ?? null,
    adminTokenFile: init.adminTokenFile,
    systemd,
  };
  if (o.json) {
    io.out(renderJson(view));
    return;
  }
  io.out(
    renderRecord([
      ['done', view.changed ? done.join('; ') : 'nothing: already installed and running'],
      ['version', view.version],
      ['state dir', stateDir],
      ['config', configFile],
      ['CA pin', view.caPin],
      ['admin API', view.admin],
      ['join address', view.join],
    ]),
  );
  io.out(`\nNext, for each worker: corral controller token create --state-dir ${stateDir} --name NAME\n`);
}

/** `corral controller install`. */
export function registerControllerInstallCommand(controller: Command, io: Output): void {
  controller
    .command('install')
    .description(
      'set up this machine as the control host: init, release 0, controller.yaml, start the controller',
    )
    .option('--prefix <dir>', 'where releases live (default /opt/corral)')
    .option('--state-dir <dir>', `controller state dir (default ${DEFAULT_CONTROLLER_STATE_DIR})`)
    .option('--config-dir <dir>', 'where controller.yaml goes (default /etc/corral)')
    .option('--address <host>', 'name or IP workers reach the controller at (repeatable)', collect, [])
    .option('--admin-listen <host:port>', 'admin API, written to controller.yaml', '127.0.0.1:8770')
    .option(
      '--worker-listen <host:port>',
      'worker API (mutual TLS), written to controller.yaml',
      '0.0.0.0:8771',
    )
    .option('--no-systemd', 'no unit even when PID 1 is systemd: start the controller detached')
    .option('--wait <duration>', 'how long to wait for the controller to come up', '60s')
    .option('--json', 'print JSON')
    .action(async (opts: Options, cmd: Command) => {
      await controllerInstall(opts, cmd.getOptionValueSource('systemd') === 'cli', io);
    });
}
