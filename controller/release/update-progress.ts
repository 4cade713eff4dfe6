import type { LogLine, StepUpdate } from '../deploy/operations.js';
import type { PushProgress } from './push.js';

/** The log line (and step change) one progress report makes, if any. */
export function progressLine(
  p: PushProgress,
  hostId: string,
): { lines: LogLine[]; step?: StepUpdate } | undefined {
  const host = p.hostName;
  switch (p.phase) {
    case 'queued':
      return undefined;
    case 'waiting':
      return {
        lines: [
          { level: 'info', host, message: 'updater busy with another operation; waiting for it to end' },
        ],
      };
    case 'uploading':
      // Only the end of the upload is logged; byte counts would flood the log.
      if (p.sentBytes === undefined || p.totalBytes === undefined) return undefined;
      if (p.sentBytes === p.totalBytes) {
        return {
          lines: [{ level: 'info', host, message: `uploaded ${p.totalBytes} bytes` }],
          step: { hostId, state: 'running' },
        };
      }
      return undefined;
    case 'installing':
      return { lines: [{ level: 'info', host, message: 'installed; health checked and watched' }] };
    case 'self-updating':
      return { lines: [{ level: 'info', host, message: 'replacing the updater' }] };
    case 'done': {
      const r = p.result;
      if (!r) return undefined;
      const ok = r.outcome === 'updated' || r.outcome === 'self-updated';
      const reason = r.reason ?? (ok ? `now on ${r.current ?? '?'}` : 'no reason given');
      return {
        lines: [
          {
            level: ok ? 'info' : 'error',
            host,
            message: `${r.outcome}: ${reason}${r.agentOutput ? ` (agent output: ${r.agentOutput.slice(-500)})` : ''}`,
          },
        ],
        step: {
          hostId,
          state: ok ? 'succeeded' : 'failed',
          detail: `${r.outcome}${r.reason ? `: ${r.reason}` : ''}`.slice(0, 2000),
        },
      };
    }
  }
}
