import { PkiError, PkiErrorCode } from './errors.js';

const LINE_CHARS = 64;

/** DER as one PEM block: 64-character base64 lines, LF line ends, a final newline. */
export function pemEncode(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += LINE_CHARS) lines.push(b64.slice(i, i + LINE_CHARS));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

const BLOCK_RE = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n?-----END \1-----\s*$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The DER inside text that is exactly one PEM block with one of `labels` (surrounding
 * whitespace allowed, no headers, canonical base64). Throws CORRAL_ERR_PKI_DER_INVALID.
 */
export function pemDecode(text: string, labels: readonly string[]): Buffer {
  const m = BLOCK_RE.exec(text);
  if (!m || !labels.includes(m[1] ?? '')) {
    throw new PkiError(PkiErrorCode.DER_INVALID, `not a single PEM block of ${labels.join(' or ')}`);
  }
  const b64 = (m[2] ?? '').replace(/\r?\n/g, '');
  if (b64.length === 0 || !BASE64_RE.test(b64)) {
    throw new PkiError(PkiErrorCode.DER_INVALID, 'PEM body is not base64');
  }
  return Buffer.from(b64, 'base64');
}
