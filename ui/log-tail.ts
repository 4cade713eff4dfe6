import { el, replace } from './dom.js';
import { field } from './widgets.js';

interface LogLine {
  readonly ts: string | null;
  readonly host: string;
  readonly service: string | null;
  readonly message: string;
  readonly truncated?: boolean;
}

/** Lines the tail keeps on the page (and holds while paused); older ones are dropped and counted. */
const MAX_SHOWN_LINES = 1000;
/** Wait before reopening a stream that broke off, in ms. */
const RECONNECT_MS = 3000;

/**
 * A live tail of `GET /v1/logs?follow=true` (the CLI's `logs --follow`): the newest lines, then
 * new ones as they arrive. Service and pattern filters are the API's own (`service`, `grep`);
 * pause holds new lines (bounded) until resume. Worker text is shown as text.
 */
export function renderLogTail(root: HTMLElement, signal: AbortSignal, host: string | undefined): void {
  const service = el('input', { id: 'log-service', type: 'text', placeholder: 'every service' });
  const grep = el('input', { id: 'log-grep', type: 'text', placeholder: 'regular expression' });
  const apply = el('button', { type: 'submit' }, 'Apply');
  const pause = el('button', { type: 'button', id: 'log-pause', 'aria-pressed': 'false' }, 'Pause');
  const state = el('p', { id: 'log-state', role: 'status' }, 'connecting…');
  const list = el('ol', { id: 'log-lines', class: 'log', 'aria-live': 'off' });
  const form = el(
    'form',
    { class: 'controls', 'aria-label': 'Log filters' },
    field('Service', service),
    field('Grep', grep),
    apply,
    pause,
  );
  replace(root, form, state, list);

  let stream: EventSource | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let paused = false;
  let held: LogLine[] = [];
  let dropped = 0;
  const say = (): void => {
    const extra = dropped > 0 ? `, ${dropped} older lines dropped` : '';
    replace(state, paused ? `paused, ${held.length} new lines held${extra}` : `following${extra}`);
  };
  const show = (lines: readonly LogLine[]): void => {
    for (const l of lines) {
      list.appendChild(
        el(
          'li',
          { 'data-service': l.service ?? '' },
          el('time', {}, l.ts ?? '-'),
          ' ',
          host === undefined ? el('span', { class: 'log-host' }, l.host, ' ') : null,
          el('span', { class: 'log-service' }, l.service ?? '-'),
          ' ',
          el('span', { class: 'log-message' }, l.message, l.truncated === true ? ' …' : ''),
        ),
      );
    }
    while (list.childElementCount > MAX_SHOWN_LINES) {
      list.firstElementChild?.remove();
      dropped++;
    }
  };
  const open = (): void => {
    stream?.close();
    if (retry) clearTimeout(retry);
    replace(list);
    held = [];
    dropped = 0;
    try {
      if (grep.value !== '') new RegExp(grep.value);
    } catch {
      // A pattern the API would refuse too: say so instead of reconnecting to a 400.
      replace(state, 'the pattern is not a valid regular expression');
      return;
    }
    const q = new URLSearchParams({ follow: 'true', limit: '200' });
    if (host !== undefined) q.set('host', host);
    if (service.value.trim() !== '') q.set('service', service.value.trim());
    if (grep.value !== '') q.set('grep', grep.value);
    const s = new EventSource(`/v1/logs?${q.toString()}`);
    stream = s;
    s.addEventListener('open', say);
    s.addEventListener('line', (event) => {
      const line = JSON.parse((event as MessageEvent<string>).data) as LogLine;
      if (!paused) show([line]);
      else {
        held.push(line);
        if (held.length > MAX_SHOWN_LINES) {
          held.shift();
          dropped++;
        }
        say();
      }
    });
    // A refused query (a bad pattern) or a stream that broke off: reopen later. The browser
    // would reconnect on its own, but a new stream starts with the newest lines again.
    s.addEventListener('error', () => {
      s.close();
      replace(state, 'disconnected; reconnecting…');
      retry = setTimeout(open, RECONNECT_MS);
    });
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    open();
  });
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    replace(pause, paused ? 'Resume' : 'Pause');
    if (!paused) {
      show(held);
      held = [];
    }
    say();
  });
  signal.addEventListener('abort', () => {
    stream?.close();
    if (retry) clearTimeout(retry);
  });
  open();
}
