import { ControllerError, ControllerErrorCode } from '../errors.js';

/**
 * The files a controller state dir must hold once `init` has run, in the order init makes
 * them, and what `--reinitialize` does when one of them is lost or damaged.
 */
export type StateGroup = 'ca' | 'server' | 'client' | 'token' | 'database' | 'manifest';

export interface StateFile {
  /** Relative to the state dir. */
  readonly rel: string;
  readonly group: StateGroup;
}

export const STATE_FILES: readonly StateFile[] = [
  { rel: 'ca/ca.crt', group: 'ca' },
  { rel: 'ca/ca.key', group: 'ca' },
  { rel: 'corral.db', group: 'database' },
  { rel: 'tls/controller.crt', group: 'server' },
  { rel: 'tls/controller.key', group: 'server' },
  { rel: 'tls/controller-client.crt', group: 'client' },
  { rel: 'tls/controller-client.key', group: 'client' },
  { rel: 'admin-token', group: 'token' },
];

/** Files that go with the database file and are moved aside with it (a WAL must never meet another database). */
export const DATABASE_COMPANIONS = ['corral.db-wal', 'corral.db-shm'] as const;

export const GROUPS: Readonly<
  Record<StateGroup, { readonly destroys: string; readonly replaces: readonly StateGroup[] }>
> = {
  ca: {
    destroys:
      'the CA and the controller certificates it issued: no enrolled worker trusts this controller any more and none of their certificates is accepted, so every worker must enroll again',
    replaces: ['ca', 'server', 'client'],
  },
  database: {
    destroys:
      'the fleet database: every host and its pins, deployments, operations, join tokens, releases and the audit log (every worker must enroll again)',
    replaces: ['database'],
  },
  server: {
    destroys: "the controller's server certificate (the same CA issues a new one, which workers accept)",
    replaces: ['server'],
  },
  client: {
    destroys:
      "the controller-client certificate workers pin: every enrolled worker refuses the controller's calls (deploys, checks, updates) until it enrolls again",
    replaces: ['client'],
  },
  token: {
    destroys: 'the initial admin token (it is revoked and a new one written)',
    replaces: ['token'],
  },
  manifest: {
    destroys: 'only the state manifest, which is rebuilt from the files present',
    replaces: ['manifest'],
  },
};

/** A state file that existed and is now missing, empty or fails its check. */
export interface StateProblem {
  /** Absolute (or as given) path of the file. */
  readonly file: string;
  readonly group: StateGroup;
  /** e.g. `is missing`, `is empty (0 bytes)`, `fails its integrity check: …`. */
  readonly problem: string;
}

/** Every group `--reinitialize` replaces for these problems (a new CA re-issues the leaves). */
export function groupsToReplace(problems: readonly StateProblem[]): StateGroup[] {
  const out = new Set<StateGroup>();
  for (const p of problems) for (const g of GROUPS[p.group].replaces) out.add(g);
  return [...out];
}

export function describeDestruction(groups: readonly StateGroup[]): string[] {
  return groups.map((g) => GROUPS[g].destroys);
}

/**
 * CORRAL_ERR_STATE_DAMAGED for `problems`: names each file, what is wrong with it, and the two
 * ways back (a backup, or `--reinitialize` with what it destroys). The first file is `file`.
 */
export function stateDamagedError(root: string, problems: readonly StateProblem[]): ControllerError {
  const groups = groupsToReplace(problems);
  const lines = [
    `controller state in ${root} is damaged; nothing was changed:`,
    ...problems.map((p) => `  ${p.file} ${p.problem}`),
    `Restore the state dir from a backup (its files belong together), or replace what is damaged with`,
    `  corral controller init --state-dir ${root} --reinitialize`,
    `which destroys:`,
    ...describeDestruction(groups).map((d) => `  - ${d}`),
  ];
  return new ControllerError(ControllerErrorCode.STATE_DAMAGED, lines.join('\n'), {
    ...(problems[0] && { file: problems[0].file }),
  });
}
