import { join } from 'node:path';
import type { Command } from 'commander';
import { ensurePrivateDir, PRIVATE_FILE_MODE, writeFileAtomic } from '../../pki/index.js';
import {
  isScope,
  OPERATOR_BUNDLE_FILES,
  SCOPES,
  type OperatorCertificate,
  type OperatorCreateResponse,
  type OperatorListResponse,
  type OperatorRevokeResponse,
  type OperatorView,
  type Scope,
} from '../../protocol/operators.js';
import { adminClientFor } from '../admin-client.js';
import { addAdminTargetOptions, type AdminTargetOptions } from '../controller-home.js';
import { parseDurationMs } from '../duration.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from '../exit.js';
import type { ApprovalPending } from '../../protocol/approvals.js';
import { isApprovalPending, printApprovalPending } from './approval-pending.js';
import { renderJson, renderRecord, renderTable, type Output } from '../output.js';

type JsonOpt = AdminTargetOptions & { json?: boolean };

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `--scope read,deploy --scope update` as a list of known scopes; exit 2 on an unknown one. */
export function scopesOf(flags: readonly string[]): Scope[] {
  const scopes = flags.flatMap((f) => f.split(',')).map((s) => s.trim());
  if (scopes.length === 0 || scopes.some((s) => s === '')) {
    throw new CliExit(EXIT_USAGE, `--scope is required: one or more of ${SCOPES.join(', ')}`);
  }
  const unknown = scopes.filter((s) => !isScope(s));
  if (unknown.length > 0) {
    throw new CliExit(
      EXIT_USAGE,
      `--scope: unknown ${unknown.join(', ')}; the scopes are ${SCOPES.join(', ')}`,
    );
  }
  return [...new Set(scopes as Scope[])];
}

/** Writes an operator's certificate bundle: the dir 0700, every file 0600. */
async function writeOperatorBundle(dir: string, c: OperatorCertificate): Promise<void> {
  await ensurePrivateDir(dir);
  await writeFileAtomic(join(dir, OPERATOR_BUNDLE_FILES.ca), c.caPem, PRIVATE_FILE_MODE);
  await writeFileAtomic(join(dir, OPERATOR_BUNDLE_FILES.cert), c.certPem, PRIVATE_FILE_MODE);
  await writeFileAtomic(join(dir, OPERATOR_BUNDLE_FILES.key), c.keyPem, PRIVATE_FILE_MODE);
}

function operatorRows(operators: readonly OperatorView[]): string {
  return renderTable(
    ['name', 'kind', 'scopes', 'state', 'created', 'by', 'expires', 'fingerprint'],
    operators.map((o) => [
      o.name,
      o.kind,
      o.scopes.join(','),
      o.state,
      o.createdAt,
      o.createdBy,
      o.expiresAt,
      o.fingerprint === null ? null : o.fingerprint.slice(0, 16),
    ]),
  );
}

/** Prints a new credential (and writes a certificate's bundle): the secret is never shown again. */
async function showCredential(
  io: Output,
  res: OperatorCreateResponse,
  opts: { json?: boolean; outDir?: string },
): Promise<void> {
  if (res.certificate) {
    if (opts.outDir === undefined) throw new CliExit(EXIT_USAGE, '--out-dir is required for a certificate');
    try {
      await writeOperatorBundle(opts.outDir, res.certificate);
    } catch (e: unknown) {
      throw new CliExit(
        EXIT_FAILURE,
        `operator ${res.operator.name} exists but its bundle could not be written to ${opts.outDir}: ${e instanceof Error ? e.message : String(e)}; revoke it and create it again`,
      );
    }
  }
  const o = res.operator;
  const view = {
    name: o.name,
    kind: o.kind,
    scopes: o.scopes,
    expiresAt: o.expiresAt,
    ...(res.token !== undefined && { token: res.token }),
    ...(res.certificate && {
      bundleDir: opts.outDir,
      fingerprint: res.certificate.fingerprint,
      caPin: `sha256:${res.certificate.caFingerprint}`,
    }),
  };
  if (opts.json) {
    io.out(renderJson(view));
    return;
  }
  io.out(
    renderRecord([
      ['name', o.name],
      ['kind', o.kind],
      ['scopes', o.scopes.join(', ')],
      ['expires', o.expiresAt ?? 'never'],
      ...(res.token !== undefined ? [['token', res.token] as const] : []),
      ...(res.certificate
        ? [
            ['bundle', opts.outDir ?? ''] as const,
            ['fingerprint', res.certificate.fingerprint] as const,
            ['CA pin', `sha256:${res.certificate.caFingerprint}`] as const,
          ]
        : []),
    ]),
  );
  io.err(
    res.token !== undefined
      ? 'corral: the token is shown this once; store it now (only its hash is kept)\n'
      : `corral: use it with: corral profile add NAME --url https://CONTROLLER:PORT --bundle ${opts.outDir ?? 'DIR'}\n`,
  );
}

/** `corral controller operators create|list|revoke|rotate`. */
export function registerControllerOperatorCommands(controller: Command, io: Output): void {
  const operators = controller
    .command('operators')
    .description('operator credentials for the admin API: scoped tokens and certificates');

  addAdminTargetOptions(
    operators
      .command('create')
      .description(
        'make an operator: a token shown once (stored hashed), or with --cert a client certificate',
      )
      .argument('<name>', 'operator name (DNS-label-like); audit entries carry it')
      .option('--scope <scope,...>', `scopes (repeatable): ${SCOPES.join(', ')}`, collect, [])
      .option('--expires <duration>', 'lifetime, e.g. 90d or 12h (default: a token never expires)')
      .option('--cert', 'issue a client certificate for TLS to the admin API (needs --out-dir)')
      .option('--out-dir <dir>', 'where --cert writes the bundle (ca.crt, operator.crt, operator.key; 0600)')
      .option('--json', 'print JSON'),
  ).action(
    async (
      name: string,
      opts: JsonOpt & { scope: string[]; expires?: string; cert?: boolean; outDir?: string },
    ) => {
      const scopes = scopesOf(opts.scope);
      if (opts.cert && opts.outDir === undefined) throw new CliExit(EXIT_USAGE, '--cert needs --out-dir');
      if (!opts.cert && opts.outDir !== undefined)
        throw new CliExit(EXIT_USAGE, '--out-dir goes with --cert');
      let expiresInSeconds: number | undefined;
      if (opts.expires !== undefined) {
        try {
          expiresInSeconds = Math.round(parseDurationMs(opts.expires) / 1000);
        } catch (e: unknown) {
          throw new CliExit(EXIT_USAGE, `--expires: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      const admin = await adminClientFor(opts);
      const res = await admin.post<OperatorCreateResponse | ApprovalPending>('/v1/operators', {
        name,
        scopes,
        ...(expiresInSeconds !== undefined && { expiresInSeconds }),
        ...(opts.cert && { cert: true }),
      });
      if (isApprovalPending(res)) {
        printApprovalPending(io, res, { what: `creating operator ${name}`, json: opts.json, rerun: true });
        return;
      }
      await showCredential(io, res, opts);
    },
  );

  addAdminTargetOptions(
    operators
      .command('list')
      .description('list operators and their credentials')
      .option('--json', 'print JSON'),
  ).action(async (opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const res = await admin.get<OperatorListResponse>('/v1/operators');
    io.out(opts.json ? renderJson(res.operators) : operatorRows(res.operators));
  });

  addAdminTargetOptions(
    operators
      .command('revoke')
      .description('revoke an operator: refused from its next request on, its open streams closed now')
      .argument('<name>', 'operator name')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt) => {
    const admin = await adminClientFor(opts);
    const res = await admin.post<OperatorRevokeResponse | ApprovalPending>(
      `/v1/operators/${encodeURIComponent(name)}/revoke`,
    );
    if (isApprovalPending(res)) {
      printApprovalPending(io, res, { what: `revoking operator ${name}`, json: opts.json });
      return;
    }
    io.out(opts.json ? renderJson(res.operators) : operatorRows(res.operators));
  });

  addAdminTargetOptions(
    operators
      .command('rotate')
      .description(
        'replace an operator credential (same scopes and lifetime); the old one is revoked at once',
      )
      .argument('<name>', 'operator name')
      .option('--out-dir <dir>', 'where the new bundle goes, for a certificate operator')
      .option('--json', 'print JSON'),
  ).action(async (name: string, opts: JsonOpt & { outDir?: string }) => {
    const admin = await adminClientFor(opts);
    // A certificate's new key exists only in the answer: know where it goes before asking.
    const { operators: all } = await admin.get<OperatorListResponse>('/v1/operators');
    const current = all.find((o) => o.name === name && o.state === 'active');
    if (current?.kind === 'cert' && opts.outDir === undefined) {
      throw new CliExit(EXIT_USAGE, `${name} is a certificate operator: rotate needs --out-dir`);
    }
    const res = await admin.post<OperatorCreateResponse | ApprovalPending>(
      `/v1/operators/${encodeURIComponent(name)}/rotate`,
    );
    if (isApprovalPending(res)) {
      printApprovalPending(io, res, { what: `rotating operator ${name}`, json: opts.json, rerun: true });
      return;
    }
    await showCredential(io, res, opts);
  });
}
