/** The admin API as the dashboard calls it: same origin, the session cookie, the anti-CSRF header on changes. */
const CSRF_HEADER = 'x-corral-csrf';
let csrf: string | undefined;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function setCsrf(token: string | undefined): void {
  csrf = token;
}

/**
 * One admin API call. A `Blob` body (a release tarball) goes as `application/octet-stream`,
 * anything else as JSON. Throws ApiError with the API's own code and message.
 */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const raw = body instanceof Blob;
  if (body !== undefined) headers['content-type'] = raw ? 'application/octet-stream' : 'application/json';
  if (method !== 'GET' && csrf !== undefined) headers[CSRF_HEADER] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined && { body: raw ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  const parsed: unknown = text === '' ? undefined : JSON.parse(text);
  if (!res.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ApiError(
      res.status,
      error?.code ?? 'CORRAL_ERR_INTERNAL',
      error?.message ?? `HTTP ${res.status}`,
    );
  }
  return parsed as T;
}

/** What an action that needs other operators' approval answers instead of running (202). */
export interface PendingApproval {
  readonly approval: { readonly id: string; readonly required: number; readonly action: string };
}

export function isPendingApproval(body: unknown): body is PendingApproval {
  return typeof body === 'object' && body !== null && 'approval' in body && 'approveWith' in body;
}
