/**
 * Private rsyslog instances for interop tests and the logs benchmark: each runs in the
 * foreground (`rsyslogd -n -f CONF -i PIDFILE`) with its own config and work directory,
 * listening only on 127.0.0.1, with TLS (gtls) certificates minted by our pki/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TlsMaterial } from '../pki/tls-options.js';

const RSYSLOGD_CANDIDATES = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd', '/usr/local/sbin/rsyslogd'];
const MODULE_DIRS = [
  '/usr/lib/x86_64-linux-gnu/rsyslog',
  '/usr/lib/aarch64-linux-gnu/rsyslog',
  '/usr/lib/rsyslog',
  '/usr/lib64/rsyslog',
];

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const p of paths) {
    if (
      await access(p).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  return undefined;
}

export interface RsyslogAvailability {
  readonly bin?: string;
  /** Why rsyslog tests are skipped, when they are. */
  readonly skipReason?: string;
}

/** Finds rsyslogd and its gtls network driver (packages rsyslog and rsyslog-gnutls). */
export async function findRsyslog(): Promise<RsyslogAvailability> {
  const bin = await firstExisting(RSYSLOGD_CANDIDATES);
  if (!bin)
    return { skipReason: 'rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls; .ci/run does)' };
  const gtls = await firstExisting(MODULE_DIRS.map((d) => join(d, 'lmnsd_gtls.so')));
  if (!gtls)
    return { skipReason: "rsyslog's TLS driver lmnsd_gtls.so is missing (apt-get install rsyslog-gnutls)" };
  return { bin };
}

/** A port nobody is listening on right now, on 127.0.0.1 (outside the ephemeral range). */
export { freePort } from '../cli/up/free-port.js';

export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = netConnect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await sleep(50);
  }
}

/** Writes an identity's PEMs as files (rsyslog needs paths); returns them. */
export async function writeTlsFiles(dir: string, name: string, material: TlsMaterial) {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files = { ca: join(dir, 'ca.crt'), cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await writeFile(files.ca, material.caPem);
  await writeFile(files.cert, material.certPem);
  await writeFile(files.key, material.keyPem, { mode: 0o600 });
  return files;
}

export interface RsyslogInstance {
  readonly child: ChildProcess;
  /** What rsyslogd wrote to stderr (its errors), up to 16 KiB. */
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts `rsyslogd -n` on a config in `dir` (config, pid file and work directory live there). */
export async function startRsyslog(bin: string, dir: string, config: string): Promise<RsyslogInstance> {
  await mkdir(join(dir, 'work'), { recursive: true });
  const conf = join(dir, 'rsyslog.conf');
  await writeFile(conf, config);
  const child = spawn(bin, ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 16_384) stderr += d.toString();
  });
  let stopped: Promise<void> | undefined;
  return {
    child,
    stderr: () => stderr,
    stop: () =>
      (stopped ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
        if (!done) {
          child.kill('SIGKILL');
          await exited;
        }
      })()),
  };
}

export interface TlsPaths {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

function globalTls(dir: string, tls: TlsPaths): string {
  return `global(
  workDirectory="${join(dir, 'work')}"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="${tls.ca}"
  defaultNetstreamDriverCertFile="${tls.cert}"
  defaultNetstreamDriverKeyFile="${tls.key}"
)
template(name="corralRaw" type="string" string="%rawmsg%")
template(name="corralRawLine" type="string" string="%rawmsg%\\n")
`;
}

/** A TLS receiver (imtcp + gtls, client certificates of our CA required) writing each message as a line. */
export function receiverConfig(dir: string, tls: TlsPaths, port: number, outFile: string): string {
  return `${globalTls(dir, tls)}
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="${port}" ruleset="recv")
ruleset(name="recv") {
  action(type="omfile" file="${outFile}" template="corralRawLine")
}
`;
}

/**
 * A TLS sender: imfile follows `inFile` and omfwd ships each line, octet-counted, over TLS
 * to `port`, checking the receiver's certificate chain and its name (`peerName`).
 */
export function senderConfig(
  dir: string,
  tls: TlsPaths,
  inFile: string,
  port: number,
  peerName: string,
): string {
  return `${globalTls(dir, tls)}
module(load="imfile")
input(type="imfile" file="${inFile}" tag="app" ruleset="fwd")
ruleset(name="fwd") {
  action(type="omfwd" target="127.0.0.1" port="${port}" protocol="tcp" template="corralRaw"
    tcp_framing="octet-counted" streamDriver="gtls" streamDriverMode="1"
    streamDriverAuthMode="x509/name" streamDriverPermittedPeers="${peerName}"
    action.resumeRetryCount="-1" action.resumeInterval="1")
}
`;
}
