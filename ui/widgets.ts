import { el, replace, type Child } from './dom.js';

/**
 * A table with a header row; `rows` are its `tr`s. Each cell carries its column's name
 * (`data-label`), which narrow screens show beside the value when rows become cards.
 */
export function table(
  id: string,
  headers: readonly string[],
  rows: readonly HTMLTableRowElement[],
): HTMLTableElement {
  labelCells(rows, headers);
  return el(
    'table',
    { id, class: 'cards' },
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...rows),
  );
}

/** Gives each cell of `rows` its column's name as `data-label` (see table()). */
export function labelCells(rows: readonly HTMLTableRowElement[], headers: readonly string[]): void {
  for (const tr of rows) {
    Array.from(tr.cells).forEach((td, i) => {
      const h = headers[i];
      if (h !== undefined && h !== '') td.setAttribute('data-label', h);
    });
  }
}

/** A row of cells; strings and numbers become text. */
export function row(attrs: Readonly<Record<string, string | undefined>>, ...cells: readonly Child[]) {
  return el('tr', attrs, ...cells.map((c) => el('td', {}, c)));
}

/**
 * A button that changes something (marked `data-action`, so a test can count what an
 * operator is offered). While `run` is in flight it is disabled, so a double click is one call.
 */
export function actionButton(
  label: string,
  name: string,
  run: () => Promise<void>,
  attrs: Readonly<Record<string, string | boolean | undefined>> = {},
): HTMLButtonElement {
  const b = el('button', { type: 'button', 'data-action': name, ...attrs }, label);
  b.addEventListener('click', () => {
    b.disabled = true;
    void run().finally(() => {
      b.disabled = false;
    });
  });
  return b;
}

/** A labelled control: `<label for>` beside it, so every input has a name a screen reader says. */
export function field(label: string, control: HTMLElement): HTMLElement {
  return el('div', { class: 'field' }, el('label', { for: control.id }, label), control);
}

/** A status line (`role=status`) and a setter for it; errors from the API keep their message. */
export interface StatusLine {
  readonly node: HTMLElement;
  readonly say: (text: Child) => void;
  readonly fail: (e: unknown) => void;
}

export function statusLine(id: string): StatusLine {
  const node = el('p', { id, role: 'status', class: 'status' });
  return {
    node,
    say: (text) => {
      node.classList.remove('error');
      replace(node, text);
    },
    fail: (e) => {
      node.classList.add('error');
      replace(node, e instanceof Error ? e.message : String(e));
    },
  };
}

/** Bytes as "1.2 GiB". */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i] ?? 'B'}`;
}

/** A timestamp as the operator's local time (ISO when the browser cannot say). */
export function when(iso: string | null | undefined): string {
  if (iso === null || iso === undefined) return '-';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
