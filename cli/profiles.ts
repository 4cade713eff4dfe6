import { readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ensurePrivateDir, PRIVATE_FILE_MODE, writeFileAtomic } from '../pki/index.js';
import { Name } from '../protocol/common.js';
import { OPERATOR_BUNDLE_FILES } from '../protocol/operators.js';
import { CliExit, EXIT_FAILURE, EXIT_USAGE } from './exit.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** Largest profiles file read, in bytes. */
const MAX_PROFILES_BYTES = 256 * 1024;
const PROFILES_FILE = 'profiles.json';

const Profile = Type.Object(
  {
    url: Type.String({ pattern: '^https?://[^\\s/]+$', maxLength: 300 }),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
    /** The profile's own copy of the CA (and operator certificate) lives in profiles/NAME/. */
    ca: Type.Boolean(),
    cert: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type Profile = Static<typeof Profile>;

const ProfilesFile = Type.Object(
  { version: Type.Literal(1), profiles: Type.Record(Name, Profile, { maxProperties: 1000 }) },
  { additionalProperties: false },
);
type ProfilesFile = Static<typeof ProfilesFile>;

/** `$XDG_CONFIG_HOME/corral` when that is an absolute path (XDG: else unset), else `~/.config/corral`. */
export function configDir(env: Env = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg !== undefined && isAbsolute(xdg) ? xdg : join(homedir(), '.config'), 'corral');
}

const profileDir = (env: Env, name: string): string => join(configDir(env), 'profiles', name);

async function readProfiles(env: Env): Promise<ProfilesFile> {
  const path = join(configDir(env), PROFILES_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, profiles: {} };
    throw e;
  }
  let value: unknown;
  try {
    if (text.length > MAX_PROFILES_BYTES) throw new CliExit(EXIT_FAILURE, `${path} is too large`);
    value = JSON.parse(text);
  } catch (e: unknown) {
    if (e instanceof CliExit) throw e;
    throw new CliExit(EXIT_FAILURE, `${path} is damaged: not JSON; remove it and add the profiles again`);
  }
  if (!Value.Check(ProfilesFile, value)) {
    throw new CliExit(
      EXIT_FAILURE,
      `${path} is damaged: not a profiles file; remove it and add the profiles again`,
    );
  }
  return value;
}

async function writeProfiles(env: Env, file: ProfilesFile): Promise<void> {
  await ensurePrivateDir(configDir(env));
  await writeFileAtomic(
    join(configDir(env), PROFILES_FILE),
    `${JSON.stringify(file, null, 2)}\n`,
    PRIVATE_FILE_MODE,
  );
}

async function readBounded(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e: unknown) {
    throw new CliExit(
      EXIT_FAILURE,
      `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
    );
  }
  if (text.length > 64 * 1024) throw new CliExit(EXIT_FAILURE, `${what} ${path} is too large`);
  return text;
}

/**
 * Adds (or replaces) a profile: the URL, a token read from `tokenFile`, and copies of the
 * bundle's CA, certificate and key (or of a lone CA file), all 0600 under configDir().
 */
export async function addProfile(
  env: Env,
  name: string,
  o: { url: string; bundle?: string; tokenFile?: string; caFile?: string },
): Promise<Profile> {
  if (!Value.Check(Name, name as unknown))
    throw new CliExit(EXIT_USAGE, `profile name must be DNS-label-like, got ${JSON.stringify(name)}`);
  const url = o.url.replace(/\/+$/, '');
  if (!/^https?:\/\/[^\s/]+$/.test(url))
    throw new CliExit(EXIT_USAGE, `--url must look like https://ctl:8770, got ${o.url}`);
  if (o.bundle === undefined && o.tokenFile === undefined) {
    throw new CliExit(
      EXIT_USAGE,
      'a profile needs --bundle DIR (an operator certificate) or --token-file FILE',
    );
  }
  if (o.bundle !== undefined && o.caFile !== undefined)
    throw new CliExit(EXIT_USAGE, '--ca goes with --token-file only');
  const https = url.startsWith('https:');
  if (https && o.bundle === undefined && o.caFile === undefined) {
    throw new CliExit(
      EXIT_USAGE,
      'an https profile needs the CA to verify the controller: --bundle DIR or --ca FILE',
    );
  }
  const token = o.tokenFile === undefined ? undefined : (await readBounded(o.tokenFile, 'token file')).trim();
  if (token === '') throw new CliExit(EXIT_USAGE, `token file ${o.tokenFile} is empty`);
  const files: Record<string, string> = {};
  if (o.bundle !== undefined) {
    for (const f of Object.values(OPERATOR_BUNDLE_FILES))
      files[f] = await readBounded(join(o.bundle, f), 'bundle file');
  } else if (o.caFile !== undefined) {
    files[OPERATOR_BUNDLE_FILES.ca] = await readBounded(o.caFile, 'CA file');
  }
  const dir = profileDir(env, name);
  await ensurePrivateDir(join(configDir(env), 'profiles'));
  await rm(dir, { recursive: true, force: true });
  if (Object.keys(files).length > 0) {
    await ensurePrivateDir(dir);
    for (const [f, text] of Object.entries(files))
      await writeFileAtomic(join(dir, f), text, PRIVATE_FILE_MODE);
  }
  const profile: Profile = {
    url,
    ...(token !== undefined && { token }),
    ca: OPERATOR_BUNDLE_FILES.ca in files,
    cert: OPERATOR_BUNDLE_FILES.cert in files,
  };
  const all = await readProfiles(env);
  all.profiles[name] = profile;
  await writeProfiles(env, all);
  return profile;
}

export async function listProfiles(env: Env): Promise<Record<string, Profile>> {
  return (await readProfiles(env)).profiles;
}

export async function removeProfile(env: Env, name: string): Promise<boolean> {
  const all = await readProfiles(env);
  if (!(name in all.profiles)) return false;
  delete all.profiles[name];
  await writeProfiles(env, all);
  await rm(profileDir(env, name), { recursive: true, force: true });
  return true;
}

/** What the admin client needs to reach a controller: URL, token, TLS material. */
export interface AdminTarget {
  readonly url: string;
  readonly token?: string | undefined;
  readonly tls?: { readonly caPem: string; readonly certPem?: string; readonly keyPem?: string } | undefined;
}

/** The admin target of a named profile; exit 1 when there is none by that name. */
export async function profileTarget(env: Env, name: string): Promise<AdminTarget> {
  const profile = (await readProfiles(env)).profiles[name];
  if (!profile)
    throw new CliExit(
      EXIT_FAILURE,
      `no profile named ${name} in ${configDir(env)}; add one with corral profile add`,
    );
  const dir = profileDir(env, name);
  const read = (f: string) => readBounded(join(dir, f), 'profile file');
  const tls = profile.ca
    ? {
        caPem: await read(OPERATOR_BUNDLE_FILES.ca),
        ...(profile.cert && {
          certPem: await read(OPERATOR_BUNDLE_FILES.cert),
          keyPem: await read(OPERATOR_BUNDLE_FILES.key),
        }),
      }
    : undefined;
  return { url: profile.url, token: profile.token, tls };
}
