import { api, ApiError, setCsrf } from './api.js';
import { el, replace } from './dom.js';
import type { Session } from './session.js';

/** The login form: an operator token, exchanged for a session cookie (the token is not kept by the page). */
export function renderLogin(root: HTMLElement, onLogin: (s: Session) => void, notice?: string): void {
  const token = el('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    required: true,
  });
  const status = el('p', { id: 'login-status', role: 'status' }, notice ?? '');
  const form = el(
    'form',
    { id: 'login', 'aria-label': 'Log in' },
    el('h1', {}, 'Corral'),
    el('label', { for: 'token' }, 'Operator token'),
    token,
    el('button', { type: 'submit' }, 'Log in'),
    status,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void (async () => {
      try {
        const session = await api<Session>('POST', '/v1/session', { token: token.value });
        token.value = '';
        setCsrf(session.csrf);
        onLogin(session);
      } catch (e: unknown) {
        replace(status, e instanceof ApiError ? e.message : 'the controller did not answer');
      }
    })();
  });
  replace(root, form);
  token.focus();
}
