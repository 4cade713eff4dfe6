import type { DeploymentSpec } from '../../protocol/deployment.js';

/**
 * The small deployment `corral up` starts with: services that log a line every second or
 * two (so the worker logs and the forwarder have something to carry), one writing to stderr,
 * and a tiny web server with an HTTP health check. `${host.name}` is resolved on the worker.
 */
export function sampleDeployment(o: { node: string; webPort: number }): DeploymentSpec {
  const loop = (body: string, seconds: number): string[] => [
    '-c',
    `while true; do ${body}; sleep ${seconds}; done`,
  ];
  return {
    services: [
      {
        name: 'ticker',
        command: 'sh',
        args: ['-c', 'i=0; while true; do i=$((i+1)); echo "tick $i on ${host.name}"; sleep 1; done'],
        restart: 'always',
      },
      {
        name: 'clock',
        command: 'sh',
        args: loop('echo "the time is $(date -u +%H:%M:%S)"', 2),
        restart: 'always',
      },
      {
        name: 'grumbler',
        command: 'sh',
        args: loop('echo "warning: nothing is wrong on ${host.name}" >&2', 3),
        restart: 'always',
      },
      {
        name: 'web',
        command: o.node,
        args: [
          '-e',
          `require('node:http').createServer((q, s) => { console.log(q.method + ' ' + q.url); s.end('hello from corral\\n'); }).listen(${o.webPort}, '127.0.0.1')`,
        ],
        restart: 'always',
        healthCheck: { type: 'http', url: `http://127.0.0.1:${o.webPort}/`, intervalMs: 2000 },
      },
      {
        name: 'batch',
        command: 'sh',
        args: loop('echo "processed $(( $(date +%s) % 7 )) jobs"', 2),
        restart: 'always',
      },
    ],
  };
}
