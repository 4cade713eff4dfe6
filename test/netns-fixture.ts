import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const IP_TIMEOUT_MS = 10_000;

/**
 * Each test file that makes namespaces takes its own /16 (10.<subnet>.0.0), so two such files
 * in one suite run side by side instead of the second one skipping; another checkout's run of
 * the same file still makes it skip.
 */
export const NETNS_SUBNETS = { e2eNetns: 231, e2eInstall: 232, adminTls: 233 } as const;

/** One worker's namespace: a veth pair, 10.S.N.1 on the root side and 10.S.N.2 inside. */
export interface WorkerNamespace {
  readonly name: string;
  /** The worker's own address, inside the namespace. */
  readonly address: string;
  /** The root namespace's end of the pair: the worker's gateway. */
  readonly gateway: string;
  /** Runs a command inside the namespace. */
  readonly prefix: readonly string[];
}

export interface Namespaces {
  readonly namespaces: readonly WorkerNamespace[];
  /** Deletes every namespace and link this created. Idempotent; reports what it could not remove. */
  cleanup(): Promise<string[]>;
}

async function ip(args: readonly string[]): Promise<string> {
  const { stdout } = await execFileAsync('ip', [...args], { timeout: IP_TIMEOUT_MS });
  return stdout;
}

/**
 * Why network namespaces cannot be used here, or undefined when they can: needs root, a
 * working `ip netns`, and 10.<subnet>.0.0/16 unused on this machine.
 */
export async function netnsUnavailable(subnet: number): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and veth pairs)';
  const probe = `corral-probe-${randomBytes(3).toString('hex')}`;
  try {
    await ip(['netns', 'add', probe]);
  } catch (e: unknown) {
    return `ip netns does not work here: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`;
  } finally {
    await ip(['netns', 'del', probe]).catch(() => '' /* never created */);
  }
  const used = await ip(['-4', 'addr', 'show']);
  if (new RegExp(`\\binet 10\\.${subnet}\\.`).test(used))
    return `10.${subnet}.0.0/16 is already in use on this machine`;
  return undefined;
}

/**
 * Creates `count` namespaces `corral-e2e-<rand>-N`, each joined to the root namespace by a
 * veth pair (10.S.N.1/30 outside, 10.S.N.2/30 inside, default route via the outside end).
 * On failure, whatever was made is removed before the error is thrown.
 */
export async function createWorkerNamespaces(count: number, subnet: number): Promise<Namespaces> {
  const rand = randomBytes(2).toString('hex');
  const made: { ns: string; outside: string }[] = [];
  const cleanup = async (): Promise<string[]> => {
    const left: string[] = [];
    for (const { ns, outside } of made.splice(0)) {
      // Deleting the namespace destroys its end of the pair, which destroys the other end.
      await ip(['netns', 'del', ns]).catch((e: unknown) => left.push(`${ns}: ${String(e)}`));
      await ip(['link', 'del', outside]).catch(() => '' /* already gone with the namespace */);
    }
    return left;
  };
  const namespaces: WorkerNamespace[] = [];
  try {
    for (let n = 1; n <= count; n++) {
      const ns = `corral-e2e-${rand}-${n}`;
      const outside = `ce${rand}-${n}o`;
      const inside = `ce${rand}-${n}i`;
      const gateway = `10.${subnet}.${n}.1`;
      const address = `10.${subnet}.${n}.2`;
      await ip(['netns', 'add', ns]);
      made.push({ ns, outside });
      await ip(['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]);
      await ip(['link', 'set', inside, 'netns', ns]);
      await ip(['addr', 'add', `${gateway}/30`, 'dev', outside]);
      await ip(['link', 'set', outside, 'up']);
      await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', ns, 'addr', 'add', `${address}/30`, 'dev', inside]);
      await ip(['-n', ns, 'link', 'set', inside, 'up']);
      await ip(['-n', ns, 'route', 'add', 'default', 'via', gateway]);
      namespaces.push({ name: ns, address, gateway, prefix: ['ip', 'netns', 'exec', ns] });
    }
  } catch (e: unknown) {
    await cleanup();
    throw e;
  }
  return { namespaces, cleanup };
}
