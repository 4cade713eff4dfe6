import { describe, expect, it } from 'vitest';
import type { ServiceView } from '../../protocol/deployment.js';
import type { HostView } from '../../protocol/host.js';
import { renderSnapshot, runLiveView, type FleetSnapshot } from './live-view.js';

const at = new Date('2026-01-01T00:00:10Z');
const CLEARED = '<clear>';
const host = (name: string, status: HostView['status']): HostView => ({
  id: `id-${name}`,
  name,
  address: '127.0.0.1',
  agentPort: 8765,
  updaterPort: 8766,
  status,
  labels: {},
  enrolledAt: '2026-01-01T00:00:00.000Z',
  lastSeen: '2026-01-01T00:00:07.000Z',
  agentVersion: '0.1.0',
  generation: 1,
  agentFingerprint: null,
  updaterFingerprint: null,
  metrics: null,
  decommissionedAt: null,
});
const service = (name: string, on: string, observed: ServiceView['observed']): ServiceView => ({
  service: name,
  host: on,
  desired: 'running',
  observed,
  restarts: 0,
  lastError: null,
  updatedAt: null,
});
const snapshot: FleetSnapshot = {
  at,
  hosts: [host('worker-1', 'online'), host('worker-2', 'offline')],
  services: [service('web', 'worker-2', 'unknown'), service('api', 'worker-1', 'running')],
};

describe('the live view of corral up', () => {
  it('shows each host with its status and service count, and each service with its state', () => {
    const lines = renderSnapshot(snapshot).split('\n');
    expect(lines).toContain('worker-1  127.0.0.1:8765  online   3s ago     1         0.1.0');
    expect(lines).toContain('worker-2  127.0.0.1:8765  offline  3s ago     1         0.1.0');
    expect(lines.filter((l) => /^(api|web) /.test(l))).toEqual([
      'api      worker-1  running  running  0         -',
      'web      worker-2  unknown  running  0         -',
    ]);
  });

  it('still shows the hosts when the services cannot be read', () => {
    const text = renderSnapshot({ ...snapshot, services: [], servicesError: 'exit 1' });
    expect(text).toContain('worker-2  127.0.0.1:8765  offline');
    expect(text).toContain('(cannot read the services: exit 1)');
  });

  it('shows worker-sent text escaped and bounded, so it cannot redraw or fake the table', () => {
    const hostile = '\u001b[2J\u001b]0;owned\u0007\r\u009b31m\u202eevil\nfake-row';
    const text = renderSnapshot({
      ...snapshot,
      services: [{ ...service('api', 'worker-1', 'failed'), lastError: `${hostile}${'x'.repeat(500)}` }],
    });
    // eslint-disable-next-line no-control-regex -- matching control characters is the point
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(text).toContain('\\x1b[2J\\x1b]0;owned\\x07\\r\\x9b31m\\u{202e}evil\\nfake-row');
    const row = text.split('\n').find((l) => l.startsWith('api '));
    expect(row?.endsWith('…')).toBe(true);
    expect(text.split('\n').some((l) => l.startsWith('fake-row'))).toBe(false);
  });

  for (const tty of [true, false]) {
    it(`${tty ? 'redraws in place on a terminal' : 'prints fresh snapshots when not a terminal'}`, async () => {
      const writes: string[] = [];
      const ac = new AbortController();
      await runLiveView({
        snapshot: async () => snapshot,
        write: (t) => {
          writes.push(t);
          if (writes.filter((w) => w !== CLEARED).length >= 3) ac.abort();
        },
        clear: () => writes.push(CLEARED),
        tty,
        intervalMs: 1,
        header: 'HEADER\n',
        signal: ac.signal,
      });
      if (!tty) expect(writes[0]).toBe('HEADER\n');
      const frames = tty ? writes.filter((w) => w !== CLEARED) : writes.slice(1);
      expect(writes.includes(CLEARED)).toBe(tty);
      if (tty) expect(writes.every((w, i) => (i % 2 === 0) === (w === CLEARED))).toBe(true);
      for (const frame of frames) {
        expect(frame.includes('HEADER')).toBe(tty);
        expect(frame).toContain('worker-1');
      }
    });
  }
});
