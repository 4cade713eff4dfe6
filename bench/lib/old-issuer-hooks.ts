import type { ResolveHook } from 'node:module';

/**
 * Module hooks (registered by old-issuer-register.ts): pki's barrel gets old-issuer-csr.js
 * where it asks for csr.js, so everything that signs a CSR through `pki/index.js` uses the
 * @peculiar/x509 path. Any other importer of csr.js (old-issuer-csr.js itself) gets the real one.
 */
export const resolve: ResolveHook = async (specifier, context, next) => {
  const resolved = await next(specifier, context);
  if (resolved.url.endsWith('/dist/pki/csr.js') && (context.parentURL ?? '').endsWith('/dist/pki/index.js')) {
    return { ...resolved, url: new URL('./old-issuer-csr.js', import.meta.url).href };
  }
  return resolved;
};
