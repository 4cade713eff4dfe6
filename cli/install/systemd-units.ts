import { readlink } from 'node:fs/promises';
import { AGENT_NODE_FLAGS } from '../../agent/node-flags.js';

/** Where install writes unit files on a systemd host. */
export const SYSTEMD_UNIT_DIR = '/etc/systemd/system';
export const WORKER_UNITS = ['corral-updater', 'corral-agent', 'corral-forwarder'] as const;
export const CONTROLLER_UNIT = 'corral-controller';

/** Whether PID 1 is systemd (the one case install writes and enables units). */
export async function pid1IsSystemd(): Promise<boolean> {
  try {
    return (await readlink('/proc/1/exe')).endsWith('/systemd');
  } catch (e: unknown) {
    void e; // EACCES or no /proc: not a host we manage with units
    return false;
  }
}

const quote = (arg: string): string =>
  /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\$])/g, '\\$1')}"`;

function unit(o: {
  description: string;
  exec: readonly string[];
  after?: string;
  killMode?: string;
}): string {
  return `[Unit]
Description=${o.description}
Wants=network-online.target
After=network-online.target${o.after ? ` ${o.after}` : ''}

[Service]
Type=simple
ExecStart=${o.exec.map(quote).join(' ')}
Restart=always
RestartSec=5
${o.killMode ? `KillMode=${o.killMode}\n` : ''}TimeoutStopSec=45

[Install]
WantedBy=multi-user.target
`;
}

/**
 * The three worker units. The agent's unit kills only the agent on stop (`KillMode=process`):
 * the services it runs live in their own process groups and are re-adopted by the next agent,
 * so `systemctl restart corral-agent` never stops a service. The agent and forwarder run from
 * `PREFIX/current` (the release the updater made current), the updater from `PREFIX/self/current`.
 */
export function workerUnits(o: { node: string; prefix: string; configFile: string }): Record<string, string> {
  const corral = (tree: string): string => `${o.prefix}/${tree}/bin/corral.js`;
  return {
    'corral-updater': unit({
      description: 'Corral updater: installs pushed releases and restarts the agent',
      exec: [o.node, corral('self/current'), 'updater', 'serve', '--config', o.configFile],
    }),
    'corral-agent': unit({
      description: "Corral agent: runs this worker's services",
      exec: [o.node, ...AGENT_NODE_FLAGS, corral('current'), 'agent', 'serve', '--config', o.configFile],
      killMode: 'process',
    }),
    'corral-forwarder': unit({
      description: 'Corral log forwarder: ships worker logs to the controller',
      exec: [o.node, corral('current'), 'forwarder', 'run', '--config', o.configFile],
      after: 'corral-agent.service',
    }),
  };
}

export function controllerUnit(o: { node: string; prefix: string; configFile: string }): string {
  return unit({
    description: 'Corral controller: CA, enrollment and fleet state',
    exec: [o.node, `${o.prefix}/current/bin/corral.js`, 'controller', 'serve', '--config', o.configFile],
  });
}
