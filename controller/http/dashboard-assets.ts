import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { CorralError, ErrorCode } from '../../protocol/errors.js';

/** Files the dashboard is made of, by extension; nothing else in its folder is served. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
const ASSET_NAME_RE = /^[a-z0-9][a-z0-9-]{0,63}\.(html|js|css|svg)$/;
/** Largest dashboard file served, in bytes (the whole bundle is far smaller). */
const MAX_ASSET_BYTES = 2 * 1024 * 1024;

/**
 * Security headers for every admin answer: a strict Content-Security-Policy (our own files
 * only, no inline script or style, never framed), no MIME sniffing, no referrer.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

interface Asset {
  readonly body: Buffer;
  readonly type: string;
}

/** The dashboard's built files in `dir` (flat), read once on first use; names outside the pattern are skipped. */
async function loadAssets(dir: string): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return assets; // not built: nothing to serve
    throw e;
  }
  for (const name of names) {
    if (!ASSET_NAME_RE.test(name)) continue;
    const type = CONTENT_TYPES[name.slice(name.lastIndexOf('.'))];
    if (type === undefined) continue;
    const body = await readFile(join(dir, name));
    if (body.length <= MAX_ASSET_BYTES) assets.set(name, { body, type });
  }
  return assets;
}

/**
 * The web dashboard: `GET /` is its page, `GET /ui/FILE` its scripts and styles, from the
 * build's folder. Both are public (the page asks for a login; every API call it makes is
 * authenticated and scoped like the CLI's). A name is only ever a key into the files read at
 * start, never a path.
 */
const AssetParams = Type.Object(
  { file: Type.String({ minLength: 1, maxLength: 80 }) },
  { additionalProperties: false },
);

export const dashboardAssets: FastifyPluginAsyncTypebox<{ readonly dir: string | undefined }> = async (
  app,
  { dir },
) => {
  let loaded: Promise<Map<string, Asset>> | undefined;
  const assets = (): Promise<Map<string, Asset>> =>
    (loaded ??= dir === undefined ? Promise.resolve(new Map<string, Asset>()) : loadAssets(dir));
  const send = async (reply: FastifyReply, name: string): Promise<FastifyReply> => {
    const asset = (await assets()).get(name);
    if (!asset) {
      throw new CorralError(
        ErrorCode.NOT_FOUND,
        name === 'index.html'
          ? 'the dashboard is not built here (npm run build makes it)'
          : `no dashboard file ${name}`,
      );
    }
    return reply.header('content-type', asset.type).header('cache-control', 'no-cache').send(asset.body);
  };
  app.get('/', async (_request, reply) => send(reply, 'index.html'));
  app.get('/ui/:file', { schema: { params: AssetParams } }, async (request, reply) => {
    const name = request.params.file;
    if (!ASSET_NAME_RE.test(name)) throw new CorralError(ErrorCode.NOT_FOUND, 'no such dashboard file');
    return send(reply, name);
  });
};
