/** What `GET|POST /v1/session` answers (protocol/web-session.ts). */
export interface Session {
  readonly operator: string;
  readonly kind: string;
  readonly scopes: readonly string[];
  readonly csrf: string;
  readonly expiresAt: string;
}

let current: Session | undefined;

/** The logged-in operator's session, for pages deciding which actions to offer. */
export function setSession(s: Session | undefined): void {
  current = s;
}

export function session(): Session | undefined {
  return current;
}

/**
 * Whether the operator's scopes allow `scope` (`admin` implies all), as the server decides it:
 * the page only hides what it would refuse, the server still enforces every scope.
 */
export function can(scope: string, s: Session | undefined = current): boolean {
  return s !== undefined && (s.scopes.includes('admin') || s.scopes.includes(scope));
}
