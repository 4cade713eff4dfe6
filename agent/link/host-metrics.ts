import { readFile, statfs } from 'node:fs/promises';
import { freemem, loadavg, totalmem, uptime } from 'node:os';
import type { HostMetrics } from '../../protocol/heartbeat.js';

/** /proc/meminfo as bytes per key (the file states kB). */
export async function readMeminfo(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = await readFile('/proc/meminfo', 'utf8');
  } catch (e: unknown) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?:\s+kB)?$/.exec(line.trim());
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]) * (line.includes('kB') ? 1024 : 1));
  }
  return out;
}

export interface DiskUsage {
  readonly totalBytes: number;
  readonly freeBytes: number;
  readonly availableBytes: number;
}

export async function diskUsage(path: string): Promise<DiskUsage> {
  const s = await statfs(path);
  return {
    totalBytes: s.blocks * s.bsize,
    freeBytes: s.bfree * s.bsize,
    availableBytes: s.bavail * s.bsize,
  };
}

/** Load, memory, disk (of the filesystem holding `diskPath`) and uptime of this host. */
export async function readHostMetrics(diskPath: string): Promise<HostMetrics> {
  const [l1, l5, l15] = loadavg();
  const mem = await readMeminfo();
  const disk = await diskUsage(diskPath);
  return {
    load1: l1 ?? 0,
    load5: l5 ?? 0,
    load15: l15 ?? 0,
    memTotalBytes: mem.get('MemTotal') ?? totalmem(),
    memAvailableBytes: mem.get('MemAvailable') ?? freemem(),
    diskTotalBytes: disk.totalBytes,
    diskFreeBytes: disk.availableBytes,
    uptimeSeconds: uptime(),
  };
}
