import { readdir } from 'node:fs/promises';

/** When this process started, in seconds since the epoch (fixed at first import). */
const START_TIME_S = Math.round((Date.now() - process.uptime() * 1000) / 1000);

/**
 * The Node process's own series, named as Prometheus clients name them: CPU, memory, heap,
 * open file descriptors (Linux `/proc`; left out where it cannot be read), start time and version.
 */
export async function processMetricLines(): Promise<string[]> {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  let fds: number | undefined;
  try {
    fds = (await readdir('/proc/self/fd')).length;
  } catch (e: unknown) {
    void e; // no /proc here (not Linux): the series is left out
  }
  return [
    '# HELP process_cpu_user_seconds_total User CPU time spent, in seconds.',
    '# TYPE process_cpu_user_seconds_total counter',
    `process_cpu_user_seconds_total ${cpu.user / 1e6}`,
    '# HELP process_cpu_system_seconds_total System CPU time spent, in seconds.',
    '# TYPE process_cpu_system_seconds_total counter',
    `process_cpu_system_seconds_total ${cpu.system / 1e6}`,
    '# HELP process_cpu_seconds_total User and system CPU time spent, in seconds.',
    '# TYPE process_cpu_seconds_total counter',
    `process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}`,
    '# HELP process_resident_memory_bytes Resident memory size, in bytes.',
    '# TYPE process_resident_memory_bytes gauge',
    `process_resident_memory_bytes ${mem.rss}`,
    '# HELP process_start_time_seconds Start time of the process since the epoch, in seconds.',
    '# TYPE process_start_time_seconds gauge',
    `process_start_time_seconds ${START_TIME_S}`,
    ...(fds === undefined
      ? []
      : [
          '# HELP process_open_fds Open file descriptors.',
          '# TYPE process_open_fds gauge',
          `process_open_fds ${fds}`,
        ]),
    '# HELP nodejs_heap_size_total_bytes V8 heap size, in bytes.',
    '# TYPE nodejs_heap_size_total_bytes gauge',
    `nodejs_heap_size_total_bytes ${mem.heapTotal}`,
    '# HELP nodejs_heap_size_used_bytes V8 heap used, in bytes.',
    '# TYPE nodejs_heap_size_used_bytes gauge',
    `nodejs_heap_size_used_bytes ${mem.heapUsed}`,
    '# HELP nodejs_external_memory_bytes Memory of C++ objects bound to JavaScript, in bytes.',
    '# TYPE nodejs_external_memory_bytes gauge',
    `nodejs_external_memory_bytes ${mem.external}`,
    '# HELP nodejs_version_info Node.js version.',
    '# TYPE nodejs_version_info gauge',
    `nodejs_version_info{version="${process.version}"} 1`,
  ];
}
