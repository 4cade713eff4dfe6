import { PkiError, PkiErrorCode } from './errors.js';

/**
 * A strict DER reader for what Corral parses itself (certificate requests, its own CA
 * certificate): definite minimal lengths only, low-tag-number form only, every length inside
 * its parent, nothing after the outermost value. Anything else throws
 * CORRAL_ERR_PKI_DER_INVALID; callers usually turn it into their own code.
 */

/** Deepest nesting read: a certificate request is about six levels deep. */
const MAX_DEPTH = 32;

const malformed = (message: string): PkiError => new PkiError(PkiErrorCode.DER_INVALID, message);

/** One TLV inside a buffer. `bytes` is the whole encoding, `contents` what follows the length. */
export interface DerNode {
  readonly tag: number;
  readonly bytes: Buffer;
  readonly contents: Buffer;
}

function readOne(buf: Buffer, at: number): DerNode {
  const tag = buf[at];
  if (tag === undefined) throw malformed('truncated: no tag');
  if ((tag & 0x1f) === 0x1f) throw malformed('high-tag-number form is not used here');
  const first = buf[at + 1];
  if (first === undefined) throw malformed('truncated: no length');
  let length: number;
  let header: number;
  if (first < 0x80) {
    length = first;
    header = 2;
  } else {
    const count = first & 0x7f;
    if (count === 0) throw malformed('indefinite length is not DER');
    if (count > 4) throw malformed('length too large');
    if (at + 2 + count > buf.length) throw malformed('truncated: length bytes');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + (buf[at + 2 + i] ?? 0);
    if (buf[at + 2] === 0 || length < 0x80) throw malformed('length is not in its shortest form');
    header = 2 + count;
  }
  const end = at + header + length;
  if (end > buf.length) throw malformed('truncated: value runs past its container');
  return { tag, bytes: buf.subarray(at, end), contents: buf.subarray(at + header, end) };
}

/** Reads exactly one value filling `buf`. */
export function readDer(buf: Uint8Array): DerNode {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const node = readOne(b, 0);
  if (node.bytes.length !== b.length) throw malformed('trailing bytes after the value');
  return node;
}

/** The values inside a constructed node, which must fill its contents exactly. */
export function childrenOf(node: DerNode, depth = 0): DerNode[] {
  if (depth > MAX_DEPTH) throw malformed('nested too deeply');
  if ((node.tag & 0x20) === 0) throw malformed(`tag 0x${node.tag.toString(16)} is not constructed`);
  const out: DerNode[] = [];
  for (let at = 0; at < node.contents.length;) {
    const child = readOne(node.contents, at);
    out.push(child);
    at += child.bytes.length;
  }
  return out;
}

/** Checks a node's tag; returns the node. */
export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (!node) throw malformed(`${what} is missing`);
  if (node.tag !== tag)
    throw malformed(`${what} has tag 0x${node.tag.toString(16)}, not 0x${tag.toString(16)}`);
  return node;
}

/** The dotted form of an OBJECT IDENTIFIER's contents. */
export function oidText(node: DerNode): string {
  if (node.tag !== 0x06 || node.contents.length === 0) throw malformed('not an object identifier');
  const arcs: number[] = [];
  let value = 0;
  for (let i = 0; i < node.contents.length; i++) {
    const byte = node.contents[i] ?? 0;
    if (value === 0 && byte === 0x80) throw malformed('object identifier arc is not minimal');
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw malformed('object identifier arc too large');
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    } else if (i === node.contents.length - 1) {
      throw malformed('object identifier is truncated');
    }
  }
  const [head = 0, ...rest] = arcs;
  const first = head < 80 ? Math.floor(head / 40) : 2;
  return [first, head - first * 40, ...rest].join('.');
}

/** A BIT STRING's bytes, which must be whole (no unused bits). */
export function bitStringBytes(node: DerNode): Buffer {
  if (node.tag !== 0x03 || node.contents[0] !== 0) throw malformed('not a whole-byte bit string');
  return node.contents.subarray(1);
}
