import type { Command } from 'commander';
import type { Output } from '../output.js';

type RegisterSome = (controller: Command, io: Output) => void;

/**
 * The modules of `corral controller …` and the subcommands each registers, in the order
 * `controller --help` lists them. A command line that names one of them loads that module
 * alone: `controller hosts` never loads the controller itself (serve), nor release packing.
 */
const MODULES: readonly { readonly names: readonly string[]; readonly load: () => Promise<RegisterSome> }[] =
  [
    {
      names: ['init', 'serve'],
      load: async () => (await import('./controller-serve.js')).registerControllerServeCommands,
    },
    {
      names: ['install'],
      load: async () => (await import('./controller-install.js')).registerControllerInstallCommand,
    },
    {
      names: ['enroll', 'token'],
      load: async () => (await import('./controller-enroll.js')).registerControllerEnrollCommands,
    },
    {
      names: ['hosts', 'host', 'decommission', 'check'],
      load: async () => (await import('./controller-hosts.js')).registerControllerHostCommands,
    },
    {
      names: ['drain', 'eligibility', 'label'],
      load: async () => (await import('./controller-eligibility.js')).registerControllerEligibilityCommands,
    },
    {
      names: ['audit'],
      load: async () => (await import('./controller-audit.js')).registerControllerAuditCommand,
    },
    {
      names: ['deploy', 'services', 'teardown'],
      load: async () => (await import('./controller-deploy.js')).registerControllerDeployCommands,
    },
    {
      names: ['restart'],
      load: async () => (await import('./controller-restart.js')).registerControllerRestartCommand,
    },
    { names: ['ops'], load: async () => (await import('./controller-ops.js')).registerControllerOpsCommands },
    {
      names: ['release', 'update', 'releases'],
      load: async () => (await import('./controller-release.js')).registerControllerReleaseCommands,
    },
    {
      names: ['rollback'],
      load: async () => (await import('./controller-rollback.js')).registerControllerRollbackCommand,
    },
    {
      names: ['events'],
      load: async () => (await import('./controller-events.js')).registerControllerEventsCommand,
    },
    {
      names: ['notify'],
      load: async () => (await import('./controller-notify.js')).registerControllerNotifyCommands,
    },
    {
      names: ['logs'],
      load: async () => (await import('./controller-logs.js')).registerControllerLogsCommand,
    },
    {
      names: ['operators'],
      load: async () => (await import('./controller-operators.js')).registerControllerOperatorCommands,
    },
    {
      names: ['approvals'],
      load: async () => (await import('./controller-approvals.js')).registerControllerApprovalCommands,
    },
    {
      names: ['backup', 'restore'],
      load: async () => (await import('./controller-backup.js')).registerControllerBackupCommands,
    },
    {
      names: ['diagnose'],
      load: async () => (await import('./controller-diagnose.js')).registerControllerDiagnoseCommand,
    },
  ];

/** The controller subcommands, as `controller --help` lists them. */
export const CONTROLLER_SUBCOMMANDS: readonly string[] = MODULES.flatMap((m) => m.names);

/**
 * `corral controller …`. With `wanted` (the subcommand the command line names) only the module
 * that registers it is loaded; otherwise, or for a name none registers, all of them.
 */
export async function registerControllerCommands(
  program: Command,
  io: Output,
  wanted?: string,
): Promise<Command> {
  const controller = program
    .command('controller')
    .description('run and drive the controller: CA, enrollment, fleet state');
  const only = MODULES.find((m) => wanted !== undefined && m.names.includes(wanted));
  for (const m of only ? [only] : MODULES) (await m.load())(controller, io);
  return controller;
}
