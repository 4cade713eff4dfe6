/** Pino redaction paths for anything that could carry key material or secrets. */
export const LOG_REDACT_PATHS: readonly string[] = [
  '*.keyPem',
  '*.key',
  '*.token',
  '*.password',
  'keyPem',
  'token',
  'req.headers.authorization',
  'headers.authorization',
  '*.privateKey',
  'secret',
  '*.secret',
];
