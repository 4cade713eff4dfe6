import { open } from 'node:fs/promises';
import { basename } from 'node:path';

/** How much of a file is scanned for private key markers, in bytes. */
const SCAN_BYTES = 256 * 1024;
const PRIVATE_KEY_RE = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;

const SECRET_NAMES: readonly (readonly [RegExp, string])[] = [
  [/^\.env(?:\..+)?$/, 'an environment file'],
  [/\.(?:key|p12|pfx|jks|keystore)$/i, 'a key store'],
  [/^id_(?:rsa|dsa|ecdsa|ed25519)$/, 'an SSH private key'],
  [/^\.(?:netrc|npmrc|pgpass)$/, 'a credentials file'],
];
const HARMLESS_SUFFIX_RE = /\.(?:example|sample|template|dist)$/i;

/**
 * Why the file at `path` (shown as `name`) looks like a secret, or undefined. Checks the name
 * and scans the first part of the content for a PEM private key.
 */
export async function secretReason(path: string, name: string): Promise<string | undefined> {
  const base = basename(name);
  if (!HARMLESS_SUFFIX_RE.test(base)) {
    for (const [re, what] of SECRET_NAMES) if (re.test(base)) return `its name marks ${what}`;
  }
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(SCAN_BYTES);
    const { bytesRead } = await fh.read(buf, 0, SCAN_BYTES, 0);
    if (PRIVATE_KEY_RE.test(buf.subarray(0, bytesRead).toString('latin1'))) return 'it holds a private key';
  } finally {
    await fh.close();
  }
  return undefined;
}

/** Compiles an exclude pattern: `*` within a segment, `**` across segments, else literal. */
export function excludeMatcher(patterns: readonly string[]): (path: string) => boolean {
  const res = patterns.map((p) => {
    const body = p
      .replace(/\/+$/, '')
      .split(/(\*\*\/?|\*)/)
      .map((part) => {
        if (part === '**/') return '(?:.*/)?';
        if (part === '**') return '.*';
        if (part === '*') return '[^/]*';
        return part.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('');
    // A pattern matches the path itself or anything under it.
    return new RegExp(`^${body}(?:/.*)?$`);
  });
  return (path) => res.some((re) => re.test(path));
}
