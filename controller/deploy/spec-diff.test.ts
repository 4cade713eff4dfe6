import { describe, expect, it } from 'vitest';
import type { ServiceSpec } from '../../protocol/service-spec.js';
import { specChanges } from './spec-diff.js';

const base = {
  name: 'web',
  runtime: 'process',
  command: 'node',
  args: ['server.js'],
  env: { PORT: '8080', TOKEN: 's3cret' },
  restart: 'always',
  healthCheck: { kind: 'tcp', port: 8080, intervalMs: 5000 },
} as unknown as ServiceSpec;
const edit = (patch: Record<string, unknown>): ServiceSpec => ({ ...base, ...patch });

describe('the fields a new spec changes, for the plan', () => {
  it.each<[string, ServiceSpec, string[]]>([
    ['nothing', edit({}), []],
    ['the command', edit({ command: 'deno' }), ['command']],
    ['the args', edit({ args: ['server.js', '--verbose'] }), ['args']],
    [
      'env keys only, never values',
      edit({ env: { PORT: '9090', DEBUG: '1' } }),
      ['env +DEBUG', 'env ~PORT', 'env -TOKEN'],
    ],
    [
      'the health check, whatever order its keys come in',
      edit({ healthCheck: { intervalMs: 5000, port: 8080, kind: 'tcp' } }),
      [],
    ],
    [
      'the health check',
      edit({ healthCheck: { kind: 'tcp', port: 9090, intervalMs: 5000 } }),
      ['healthCheck'],
    ],
    ['a field added', edit({ stopGraceMs: 3000 }), ['stopGraceMs']],
  ])('%s', (_what, after, expected) => {
    expect(specChanges(base, after)).toEqual(expected);
  });

  it('never carries an env value', () => {
    const changes = specChanges(base, edit({ env: { PORT: '8080', TOKEN: 'other-secret' } }));
    expect(changes).toEqual(['env ~TOKEN']);
    expect(changes.join(' ')).not.toMatch(/secret/);
  });
});
