import {
  CorralError,
  ErrorCode,
  START_PLACEHOLDERS,
  type StartPlaceholder,
  type StartSpec,
} from '../protocol/index.js';

export type StartVars = Readonly<Record<StartPlaceholder, string>>;

const PLACEHOLDER_RE = /\$\{([^}]*)\}/g;

function expand(text: string, vars: StartVars): string {
  return text.replace(PLACEHOLDER_RE, (_m, name: string) => {
    if (!(START_PLACEHOLDERS as readonly string[]).includes(name)) {
      throw new CorralError(
        ErrorCode.VALIDATION,
        `start command uses unknown placeholder \${${name}} (known: ${START_PLACEHOLDERS.join(', ')})`,
      );
    }
    return vars[name as StartPlaceholder];
  });
}

/**
 * Expands `${release}`, `${version}`, `${root}`, `${stateDir}` and `${agentStateDir}` in a start
 * command and its arguments (no shell is involved, so nothing else is interpreted). Throws
 * CORRAL_ERR_VALIDATION on an unknown placeholder.
 */
export function expandStart(spec: StartSpec, vars: StartVars): { command: string; args: string[] } {
  return { command: expand(spec.command, vars), args: spec.args.map((a) => expand(a, vars)) };
}
