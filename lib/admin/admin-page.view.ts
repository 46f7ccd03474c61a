import { recordTime } from '../backends/holder-record';
import type { LockWaiters } from '../held-lock.interface';
import { formatDuration, type HolderView } from '../cli/format';

/** A holder as the page shows it: the CLI's view (with `alive`) and who waits for its key. */
export interface HolderRow extends HolderView {
  waiters: LockWaiters;
}

/** What one rendering of the holders' table needs. */
export interface HoldersModel {
  holders: readonly HolderRow[];
  prefix: string;
  /** The `list` limit this answer was asked with: reaching it means there may be more. */
  limit: number;
  /** When the store was asked (epoch ms). */
  at: number;
}

export interface PageModel extends HoldersModel {
  /** The `limit` query parameter as given, kept across filtering. */
  limitParam?: string;
  refreshMs: number;
  /**
   * How the page's own routes are reached from the URL it was asked at (`''` under `…/ui/`,
   * `'ui/'` under `…/ui`). Relative links keep working behind a proxy that moves the path.
   */
  here: string;
}

/** Everything rendered goes through here: keys, owners and hosts are data from the store. */
export function escapeHtml(value: string | number): string {
  return String(value).replace(/[&<>"']/g, (char) => HTML_ENTITIES[char]);
}

const HTML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function renderPage(model: PageModel): string {
  const { here } = model;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Locks · nestjs-lock</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${here}page.css">
<script src="${here}page.js" defer></script>
</head>
<body data-rows-url="${here}rows" data-reap-url="${here}../reap" data-refresh-ms="${model.refreshMs}">
<header>
<h1>Locks</h1>
<form class="filter" method="get" action="">
<label>Key prefix <input type="search" name="prefix" value="${escapeHtml(model.prefix)}" placeholder="all keys" autocomplete="off"></label>
${model.limitParam === undefined ? '' : `<input type="hidden" name="limit" value="${escapeHtml(model.limitParam)}">`}
<button type="submit">Filter</button>
<label class="live"><input type="checkbox" id="live" checked> refresh every ${escapeHtml(formatDuration(model.refreshMs))}</label>
</form>
</header>
<main>
<p id="notice" role="status" aria-live="polite" hidden></p>
<p id="refresh-error" role="status" hidden></p>
<section id="holders" aria-live="off">
${renderHolders(model)}
</section>
</main>
<dialog id="reap-dialog" aria-labelledby="reap-title">
<form id="reap-form">
<h2 id="reap-title">Reap <code id="reap-key"></code>?</h2>
<p>Held by <strong id="reap-owner"></strong>. The holder is told at its next heartbeat; fenced resources reject its writes from now on.</p>
<label>Reason (logged with your name) <input name="reason" required maxlength="200" autocomplete="off"></label>
<label class="check"><input type="checkbox" name="compare" checked> only if it still has fencing token <span id="reap-fence"></span></label>
<div class="actions"><button type="button" id="reap-cancel">Cancel</button> <button type="submit" id="reap-confirm" class="danger">Reap</button></div>
</form>
</dialog>
</body>
</html>
`;
}

/** The part the page reloads (`GET <path>/ui/rows`): a summary line and the table. */
export function renderHolders(model: HoldersModel): string {
  const { holders, prefix, limit } = model;
  const count = `${holders.length} holder${holders.length === 1 ? '' : 's'}`;
  const scope = prefix === '' ? '' : ` under <code>${escapeHtml(prefix)}</code>`;
  const more = holders.length >= limit ? ` (the first ${limit}; there may be more)` : '';
  const at = new Date(model.at);
  const rows =
    holders.length === 0
      ? `<tr><td colspan="8" class="empty">Nobody holds a lock${scope}.</td></tr>`
      : holders.map(renderRow).join('\n');
  return `<p class="summary">${count}${scope}${more}, as of <time datetime="${at.toISOString()}">${at.toISOString().slice(11, 19)} UTC</time></p>
<table>
<thead><tr><th scope="col">Key</th><th scope="col">Owner</th><th scope="col">Age</th><th scope="col">Lease left</th><th scope="col">Fencing token</th><th scope="col">Waiters</th><th scope="col">State</th><th scope="col"><span class="hidden">Actions</span></th></tr></thead>
<tbody>
${rows}
</tbody>
</table>`;
}

function renderRow(row: HolderRow): string {
  const key = escapeHtml(row.key);
  const owner = escapeHtml(row.ownerId);
  const mode = row.mode === 'shared' ? ' <span class="badge">shared</span>' : '';
  const here = row.local ? ' <span class="badge local">this instance</span>' : '';
  return `<tr class="holder${row.stale ? ' stale' : ''}">
<td class="key"><code>${key}</code>${mode}</td>
<td class="owner">${owner}${here}<small>${escapeHtml(row.hostname)} · pid ${escapeHtml(row.pid)}${aliveText(row.alive)}</small></td>
<td class="age" title="since ${escapeHtml(recordTime(row.acquiredAt))}">${escapeHtml(formatDuration(row.ageMs))}</td>
<td class="lease">${leaseCell(row)}</td>
<td class="fence">${escapeHtml(row.fencingToken)}</td>
<td class="waiters">${waitersCell(row.waiters)}</td>
<td class="state">${row.stale ? `<span class="badge stale">stale</span><small>${escapeHtml(row.stale)}</small>` : 'held'}</td>
<td class="act"><button type="button" class="reap" data-key="${key}" data-fence="${escapeHtml(row.fencingToken)}" data-owner="${owner}">Reap…</button></td>
</tr>`;
}

function aliveText(alive: boolean | null): string {
  if (alive === null) return '';
  return alive ? ' · running' : ' · <strong class="dead">not running</strong>';
}

/** A `<meter>`: a bar without inline style, coloured by the browser as it runs out. */
function leaseCell(row: HolderRow): string {
  if (row.expiresInMs === null) return '<small>no expiry (kernel lock)</small>';
  const ttl = Math.max(row.ttlMs, row.expiresInMs, 1);
  const left = escapeHtml(
    row.expiresInMs === 0 ? `expired (lease ${formatDuration(row.ttlMs)})` : `${formatDuration(row.expiresInMs)} of ${formatDuration(row.ttlMs)}`,
  );
  const bounds = `min="0" max="${escapeHtml(ttl)}" low="${escapeHtml(Math.round(ttl * 0.2))}" high="${escapeHtml(Math.round(ttl * 0.5))}" optimum="${escapeHtml(ttl)}"`;
  return `<meter ${bounds} value="${escapeHtml(row.expiresInMs)}" title="${left}">${left}</meter><small>${left}</small>`;
}

function waitersCell({ queued, local }: LockWaiters): string {
  if (queued === null) return `${escapeHtml(local)}<small>of this instance (the store keeps no queue)</small>`;
  return local > 0 ? `${escapeHtml(queued + local)}<small>${escapeHtml(local)} of this instance</small>` : escapeHtml(queued);
}
