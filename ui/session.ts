/** What `GET|POST /v1/session` answers (protocol/web-session.ts). */
export interface Session {
  readonly operator: string;
  readonly kind: string;
  readonly scopes: readonly string[];
  readonly csrf: string;
  readonly expiresAt: string;
}

export function can(session: Session, scope: string): boolean {
  return session.scopes.includes('admin') || session.scopes.includes(scope);
}
