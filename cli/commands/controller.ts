import type { Command } from 'commander';
import type { Output } from '../output.js';
import { registerControllerAuditCommand } from './controller-audit.js';
import { registerControllerDeployCommands } from './controller-deploy.js';
import { registerControllerEnrollCommands } from './controller-enroll.js';
import { registerControllerHostCommands } from './controller-hosts.js';
import { registerControllerInstallCommand } from './controller-install.js';
import { registerControllerOpsCommands } from './controller-ops.js';
import { registerControllerReleaseCommands } from './controller-release.js';
import { registerControllerServeCommands } from './controller-serve.js';
import { registerControllerEventsCommand } from './controller-events.js';
import { registerControllerNotifyCommands } from './controller-notify.js';
import { registerControllerDiagnoseCommand } from './controller-diagnose.js';

/** `corral controller …`. */
export function registerControllerCommands(program: Command, io: Output): Command {
  const controller = program
    .command('controller')
    .description('run and drive the controller: CA, enrollment, fleet state');
  registerControllerServeCommands(controller, io);
  registerControllerInstallCommand(controller, io);
  registerControllerEnrollCommands(controller, io);
  registerControllerHostCommands(controller, io);
  registerControllerAuditCommand(controller, io);
  registerControllerDeployCommands(controller, io);
  registerControllerOpsCommands(controller, io);
  registerControllerReleaseCommands(controller, io);
  registerControllerEventsCommand(controller, io);
  registerControllerNotifyCommands(controller, io);
  registerControllerDiagnoseCommand(controller, io);
  return controller;
}
