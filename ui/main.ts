import { api, ApiError, setCsrf } from './api.js';
import { el, replace } from './dom.js';
import { renderFleet } from './fleet.js';
import { renderLogin } from './login.js';
import { renderServices } from './services.js';
import type { Session } from './session.js';

const root = document.getElementById('app');

function shell(session: Session): void {
  if (!root) return;
  const page = el('main', { id: 'page' });
  const logout = el('button', { id: 'logout', type: 'button' }, 'Log out');
  logout.addEventListener('click', () => {
    void api('DELETE', '/v1/session').finally(() => {
      setCsrf(undefined);
      life.abort();
      view.abort();
      renderLogin(root, shell, 'Logged out.');
    });
  });
  replace(
    root,
    el(
      'header',
      {},
      el('strong', {}, 'Corral'),
      el(
        'nav',
        { 'aria-label': 'Pages' },
        el('a', { href: '#/fleet' }, 'Fleet'),
        ' ',
        el('a', { href: '#/services' }, 'Services'),
      ),
      el('span', { id: 'who' }, `${session.operator} (${session.scopes.join(', ')})`),
      logout,
    ),
    page,
  );
  const life = new AbortController();
  let view = new AbortController();
  const route = (): void => {
    view.abort();
    view = new AbortController();
    if (location.hash === '#/services') renderServices(page, view.signal);
    else renderFleet(page, view.signal);
  };
  window.addEventListener('hashchange', route, { signal: life.signal });
  route();
}

async function boot(): Promise<void> {
  if (!root) return;
  try {
    const session = await api<Session>('GET', '/v1/session');
    setCsrf(session.csrf);
    shell(session);
  } catch (e: unknown) {
    // No session (401), or it ended: the login form, saying why when it is not just that.
    renderLogin(root, shell, e instanceof ApiError && e.status === 401 ? undefined : String(e));
  }
}

void boot();
