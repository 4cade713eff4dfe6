import { api, ApiError, setCsrf } from './api.js';
import { renderApprovals } from './approvals.js';
import { renderAudit } from './audit.js';
import { renderDeploy } from './deploy.js';
import { el, replace } from './dom.js';
import { renderFleet } from './fleet.js';
import { renderHost } from './host.js';
import { renderLogin } from './login.js';
import { renderOperation, renderOperations } from './operations.js';
import { renderOperators } from './operators.js';
import { renderReleases } from './releases.js';
import { renderServices } from './services.js';
import { can, setSession, type Session } from './session.js';

const root = document.getElementById('app');

/** The pages, by the first part of the address after `#/`, and the scope a page needs (its actions check their own). */
const PAGES: readonly { readonly path: string; readonly title: string; readonly scope: string }[] = [
  { path: 'fleet', title: 'Fleet', scope: 'read' },
  { path: 'services', title: 'Services', scope: 'read' },
  { path: 'deploy', title: 'Deploy', scope: 'deploy' },
  { path: 'releases', title: 'Releases', scope: 'read' },
  { path: 'ops', title: 'Operations', scope: 'read' },
  { path: 'approvals', title: 'Approvals', scope: 'read' },
  { path: 'audit', title: 'Audit', scope: 'read' },
  { path: 'operators', title: 'Operators', scope: 'admin' },
];

function shell(session: Session): void {
  if (!root) return;
  setSession(session);
  const page = el('main', { id: 'page', tabindex: '-1' });
  const logout = el('button', { id: 'logout', type: 'button' }, 'Log out');
  logout.addEventListener('click', () => {
    void api('DELETE', '/v1/session').finally(() => {
      setCsrf(undefined);
      setSession(undefined);
      life.abort();
      view.abort();
      renderLogin(root, shell, 'Logged out.');
    });
  });
  const pages = PAGES.filter((p) => can(p.scope, session));
  const links = pages.map((p) => el('a', { href: `#/${p.path}`, 'data-page': p.path }, p.title));
  // Moves focus past the navigation without changing the address (the address is the page).
  const skip = el('a', { class: 'skip', href: '#page' }, 'Skip to the page');
  skip.addEventListener('click', (event) => {
    event.preventDefault();
    page.focus();
  });
  replace(
    root,
    skip,
    el(
      'header',
      {},
      el('strong', {}, 'Corral'),
      el('nav', { 'aria-label': 'Pages' }, ...links),
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
    const [first = 'fleet', second, third] = location.hash
      .replace(/^#\/?/, '')
      .split('/')
      .map((p) => decodeURIComponent(p));
    const known = pages.some((p) => p.path === first) || first === 'host';
    const at = known ? first : 'fleet';
    for (const a of links) {
      if (a.dataset.page === at) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    const signal = view.signal;
    if (at === 'host' && second !== undefined) renderHost(page, signal, second, third ?? 'overview');
    else if (at === 'services') renderServices(page, signal);
    else if (at === 'deploy') renderDeploy(page, signal);
    else if (at === 'releases') renderReleases(page, signal);
    else if (at === 'ops' && second !== undefined) renderOperation(page, signal, second);
    else if (at === 'ops') renderOperations(page, signal);
    else if (at === 'approvals') renderApprovals(page, signal);
    else if (at === 'audit') renderAudit(page);
    else if (at === 'operators') renderOperators(page);
    else renderFleet(page, signal);
    document.title = `${PAGES.find((p) => p.path === at)?.title ?? second ?? 'Corral'} · Corral`;
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
