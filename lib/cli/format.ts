import { hostname } from 'node:os';
import type { LockInfo } from '../held-lock.interface';
import type { LockRecord } from '../lock-backend.interface';
import { isPidAlive } from '../backends/file/pid-liveness';

const THIS_HOST = hostname();

/** A holder as the CLI shows it: the library's record plus whether its process still runs. */
export interface HolderView extends LockInfo {
  /** `true`/`false` for a process on this host; `null` when it runs elsewhere and cannot be asked. */
  alive: boolean | null;
}

export function toView(info: LockInfo): HolderView {
  return { ...info, alive: isAlive(info.hostname, info.pid) };
}

/**
 * A record the file backend removed on opening because its holder was dead. Shaped like the
 * service's own records so it lists alongside them; `null` when it lies outside `keyPrefix`.
 */
export function sweptView(record: LockRecord, keyPrefix: string): HolderView | null {
  if (!record.key.startsWith(keyPrefix)) return null;
  return {
    ...record,
    key: record.key.slice(keyPrefix.length),
    ageMs: Math.max(0, Date.now() - record.acquiredAt),
    local: false,
    holderCount: 1,
    alive: isAlive(record.hostname, record.pid),
    stale: `${record.stale ?? 'holder gone'}; record removed when the directory was opened`,
  };
}

/** Whether the holder's process lives; `null` when it is on another host (we cannot tell). */
export function isAlive(host: string, pid: number): boolean | null {
  if (host !== THIS_HOST || !Number.isSafeInteger(pid) || pid <= 0) return null;
  return isPidAlive(pid);
}

const COLUMNS: readonly [header: string, cell: (view: HolderView) => string][] = [
  ['KEY', (view) => view.key],
  // A semaphore's permits show their size: `limit 3`.
  ['MODE', (view) => (view.limit === undefined ? view.mode : `limit ${view.limit}`)],
  ['OWNER', (view) => view.ownerId],
  ['HOST', (view) => view.hostname],
  ['PID', (view) => String(view.pid)],
  ['ALIVE', (view) => (view.alive === null ? '?' : view.alive ? 'yes' : 'no')],
  ['AGE', (view) => formatDuration(view.ageMs)],
  ['EXPIRES IN', (view) => (view.expiresInMs === null ? '-' : formatDuration(view.expiresInMs))],
  ['FENCE', (view) => String(view.fencingToken)],
  ['STALE', (view) => (view.stale ? `STALE: ${view.stale}` : '')],
];

export function formatTable(views: readonly HolderView[]): string {
  const rows = [COLUMNS.map(([header]) => header), ...views.map((view) => COLUMNS.map(([, cell]) => printable(cell(view))))];
  const widths = COLUMNS.map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd()).join('\n') + '\n';
}

/**
 * Text from the store made safe for a terminal: owners and hosts were written by other processes,
 * so control characters (escape sequences, carriage returns) are shown as `\xNN`, never sent.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Two most significant units: enough to tell "just now" from "stuck since yesterday". */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))}ms`;
  const seconds = Math.floor(ms / 1_000);
  if (seconds < 60) return `${(ms / 1_000).toFixed(1)}s`;
  const units: [number, string][] = [
    [86_400, 'd'],
    [3_600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const first = units.findIndex(([size]) => seconds >= size);
  const [bigSize, bigUnit] = units[first];
  const [smallSize, smallUnit] = units[first + 1];
  const big = Math.floor(seconds / bigSize);
  const small = Math.floor((seconds % bigSize) / smallSize);
  return `${big}${bigUnit}${String(small).padStart(2, '0')}${smallUnit}`;
}
