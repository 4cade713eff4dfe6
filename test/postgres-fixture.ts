import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A private PostgreSQL cluster for tests: `initdb` in a temp dir (as the `postgres` user when
 * the tests run as root, since the server refuses to run as root), started on a free
 * loopback port with its unix socket in the same temp dir, trust authentication for the
 * `postgres` role over loopback only, and no fsync (the data dies with the test). Each test
 * asks for a fresh database by name. `stop()` stops the server and deletes the dir.
 */
export interface PostgresCluster {
  readonly port: number;
  /** A new database (empty, or a copy of `template`); returns its connection URL. */
  createDatabase(template?: string): Promise<string>;
  /** The name of the database a URL from createDatabase names. */
  databaseName(url: string): string;
  stop(): Promise<void>;
}

const PG_ROOT = '/usr/lib/postgresql';
/** Start attempts when the free port we picked was taken meanwhile. */
const START_ATTEMPTS = 3;
const SERVER_START_TIMEOUT_S = 30;

/** The folder holding initdb and pg_ctl (CORRAL_TEST_PG_BIN, else Debian's newest), or undefined. */
export function postgresBinDir(): string | undefined {
  const given = process.env.CORRAL_TEST_PG_BIN;
  if (given) return existsSync(join(given, 'initdb')) ? given : undefined;
  if (!existsSync(PG_ROOT)) return undefined;
  const versions = readdirSync(PG_ROOT)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : join(PG_ROOT, versions[0], 'bin');
}

/** Why PostgreSQL tests are skipped here, or undefined when they run. */
export function postgresSkipReason(): string | undefined {
  if (process.env.CORRAL_TEST_POSTGRES === '0') return 'CORRAL_TEST_POSTGRES=0';
  return postgresBinDir() === undefined
    ? `no PostgreSQL binaries (initdb) under ${PG_ROOT} or CORRAL_TEST_PG_BIN`
    : undefined;
}

interface Run {
  readonly code: number | null;
  readonly output: string;
}

function run(
  file: string,
  args: readonly string[],
  asUser: { uid: number; gid: number } | undefined,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asUser && { uid: asUser.uid, gid: asUser.gid }),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
      cwd: '/',
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function postgresUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) throw new Error('running as root, but there is no postgres user');
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/**
 * A private cluster on a loopback port; throws when the binaries are missing. Tests run it
 * without fsync (nothing to keep); `durable` keeps PostgreSQL's defaults (fsync, synchronous
 * commit) for benchmarks that compare it with SQLite's synced commits. `maxConnections`
 * (default 60) is raised by the cluster one whole vitest run shares.
 */
export async function startPostgres(
  o: { durable?: boolean; maxConnections?: number } = {},
): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error(postgresSkipReason());
  const user = postgresUser();
  const dir = await mkdtemp(join(tmpdir(), 'corral-pg-'));
  const data = join(dir, 'data');
  if (user) await chown(dir, user.uid, user.gid);
  const stopSync = (): void => {
    spawnSync(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop'], {
      stdio: 'ignore',
      ...(user && { uid: user.uid, gid: user.gid }),
    });
  };
  try {
    const init = await run(
      join(bin, 'initdb'),
      ['-D', data, '-U', 'postgres', '--auth=trust', '--no-locale', '--encoding=UTF8', '--no-sync'],
      user,
    );
    if (init.code !== 0) throw new Error(`initdb failed: ${init.output}`);
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const options = [
        `-c listen_addresses=127.0.0.1`,
        `-p ${port}`,
        `-k ${dir}`,
        ...(o.durable === true
          ? []
          : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
        `-c max_connections=${o.maxConnections ?? 60}`,
        '-c shared_buffers=16MB',
      ].join(' ');
      const started = await run(
        join(bin, 'pg_ctl'),
        [
          '-D',
          data,
          '-l',
          join(dir, 'server.log'),
          '-o',
          options,
          '-w',
          '-t',
          String(SERVER_START_TIMEOUT_S),
          'start',
        ],
        user,
      );
      if (started.code === 0) break;
      if (attempt >= START_ATTEMPTS) throw new Error(`pg_ctl start failed: ${started.output}`);
    }
    // A test process that dies without stop() leaves no server behind.
    process.once('exit', stopSync);
    const admin = new pg.Pool({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: 1 });
    let stopped = false;
    return {
      port,
      async createDatabase(template) {
        const name = `corral_${randomBytes(6).toString('hex')}`;
        if (template !== undefined && !/^[a-z0-9_]+$/.test(template))
          throw new Error(`bad template ${template}`);
        await admin.query(`CREATE DATABASE ${name}${template === undefined ? '' : ` TEMPLATE ${template}`}`);
        return `postgres://postgres@127.0.0.1:${port}/${name}`;
      },
      databaseName(url) {
        return new URL(url).pathname.slice(1);
      },
      async stop() {
        if (stopped) return;
        stopped = true;
        await admin.end();
        process.removeListener('exit', stopSync);
        await run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop'], user);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e: unknown) {
    stopSync();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
