import { register } from 'node:module';

/**
 * `node --import <this file>`: the process signs CSRs the way Corral did before issue 13
 * (@peculiar/x509, see old-issuer-csr.ts), for `bench enroll` to run beside the native issuer.
 */
register('./old-issuer-hooks.js', import.meta.url);
