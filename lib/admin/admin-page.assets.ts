/**
 * The page's script and stylesheet, served from `<path>/ui/page.js` and `…/page.css` so the
 * page needs no inline script or style, no build step and nothing from elsewhere.
 */

/** The Trusted Types policy the script creates; the only one the page's CSP allows. */
const TRUSTED_TYPES_POLICY = 'nestjs-lock-admin';

/**
 * Sent with the page and its parts: only our own script and stylesheet, fetches to our own
 * routes, no framing, and HTML only from the one policy that inserts the server's table.
 */
export const PAGE_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  'img-src data:',
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "require-trusted-types-for 'script'",
  `trusted-types ${TRUSTED_TYPES_POLICY}`,
].join('; ');

/**
 * Reloads the table (server-rendered, every value escaped there) every `data-refresh-ms`
 * while "live" is ticked and the tab is visible; reaps through the JSON route after the
 * dialog asked for a reason. Plain ES2017, no dependencies; text goes in as `textContent`.
 */
export const PAGE_SCRIPT = `'use strict';
(function () {
  var body = document.body;
  var rowsUrl = body.dataset.rowsUrl;
  var reapUrl = body.dataset.reapUrl;
  var refreshMs = Number(body.dataset.refreshMs) || 2000;
  var holders = document.getElementById('holders');
  var notice = document.getElementById('notice');
  var refreshError = document.getElementById('refresh-error');
  var live = document.getElementById('live');
  var dialog = document.getElementById('reap-dialog');
  var form = document.getElementById('reap-form');
  var confirmButton = document.getElementById('reap-confirm');
  var policy = window.trustedTypes
    ? window.trustedTypes.createPolicy('${TRUSTED_TYPES_POLICY}', { createHTML: function (html) { return html; } })
    : { createHTML: function (html) { return html; } };
  var target = null;
  var timer = null;

  function say(text, kind) {
    notice.textContent = text;
    notice.className = kind;
    notice.hidden = false;
  }

  function problem(response, answer) {
    var message = answer && answer.message;
    if (Array.isArray(message)) message = message.join('; ');
    return response.status + ' ' + (typeof message === 'string' ? message : response.statusText);
  }

  async function refresh() {
    try {
      var response = await fetch(rowsUrl + location.search, { headers: { accept: 'text/html' }, cache: 'no-store' });
      if (!response.ok) throw new Error(problem(response, await response.json().catch(function () { return null; })));
      holders.innerHTML = policy.createHTML(await response.text());
      holders.classList.remove('outdated');
      refreshError.hidden = true;
    } catch (error) {
      holders.classList.add('outdated');
      refreshError.textContent = 'Could not refresh (' + error.message + '); the table shows the last answer.';
      refreshError.hidden = false;
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async function () {
      if (live.checked && !document.hidden) await refresh();
      schedule();
    }, refreshMs);
  }

  function reapMessage(status, answer, key) {
    var holder = answer.previous || answer.current;
    if (status === 200) {
      return 'Reaped "' + key + '"' + (holder ? ' (was ' + holder.ownerId + ', fencing token ' + holder.fencingToken + ').' : '.');
    }
    if (status === 404) return '"' + key + '" was no longer held: nothing to reap.';
    if (status === 409 && answer.outcome === 'changed-hands') {
      return 'Not reaped: "' + key + '" changed hands' + (holder ? ' (now ' + holder.ownerId + ', fencing token ' + holder.fencingToken + ')' : '') + '. Look again.';
    }
    if (status === 409 && answer.outcome === 'held-by-live-process') {
      return 'Not reaped: process ' + answer.pid + ' on ' + answer.hostname + ' is alive and holds the kernel lock of "' + key + '". Stop that process.';
    }
    if (status === 403) return 'Not reaped: you are not allowed to reap locks here (403).';
    return 'Not reaped: ' + status + ' ' + (answer.message || '');
  }

  holders.addEventListener('click', function (event) {
    var button = event.target.closest('button.reap');
    if (!button) return;
    target = { key: button.dataset.key, fence: Number(button.dataset.fence), owner: button.dataset.owner };
    form.reset();
    document.getElementById('reap-key').textContent = target.key;
    document.getElementById('reap-owner').textContent = target.owner;
    document.getElementById('reap-fence').textContent = String(target.fence);
    dialog.showModal();
  });

  document.getElementById('reap-cancel').addEventListener('click', function () { dialog.close(); });

  form.addEventListener('submit', async function (event) {
    event.preventDefault();
    var reason = form.elements.reason.value.trim();
    if (!target || !reason) return form.elements.reason.reportValidity();
    var request = { key: target.key, reason: reason };
    if (form.elements.compare.checked) request.expectFencingToken = target.fence;
    confirmButton.disabled = true;
    try {
      var response = await fetch(reapUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(request),
        cache: 'no-store',
      });
      var answer = await response.json().catch(function () { return {}; });
      say(reapMessage(response.status, answer, target.key), response.ok ? 'ok' : 'error');
    } catch (error) {
      say('Not reaped: ' + error.message, 'error');
    } finally {
      confirmButton.disabled = false;
      dialog.close();
      await refresh();
      schedule();
    }
  });

  live.addEventListener('change', function () { if (live.checked) refresh(); });
  document.addEventListener('visibilitychange', function () { if (!document.hidden && live.checked) refresh(); });
  schedule();
})();
`;

export const PAGE_STYLES = `:root { color-scheme: light dark; --line: #8884; --muted: #777; --bad: #c62828; --ok: #2e7d32; --warn: #b26a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 2rem; padding: 0.75rem 1.25rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.25rem; margin: 0; }
.filter { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1rem; }
.filter input[type=search] { min-width: 16rem; margin-left: 0.4rem; }
main { padding: 0.75rem 1.25rem; }
.summary { color: var(--muted); margin: 0 0 0.5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 0.4rem 0.6rem; border-bottom: 1px solid var(--line); }
th { font-weight: 600; white-space: nowrap; }
td small { display: block; color: var(--muted); }
td.key code { word-break: break-all; }
td.fence, td.waiters, td.age { font-variant-numeric: tabular-nums; }
meter { width: 9rem; height: 0.9rem; }
tr.stale { background: #ffb30022; }
.badge { display: inline-block; font-size: 0.75rem; padding: 0 0.4rem; margin-left: 0.3rem; border-radius: 0.6rem; border: 1px solid var(--line); }
.badge.local { border-color: var(--ok); color: var(--ok); }
.badge.stale { border-color: var(--warn); color: var(--warn); margin-left: 0; }
.dead { color: var(--bad); }
.empty { color: var(--muted); text-align: center; padding: 1.5rem; }
.outdated { opacity: 0.55; }
.hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
#notice { padding: 0.5rem 0.75rem; border-radius: 0.3rem; border: 1px solid var(--line); }
#notice.ok { border-color: var(--ok); }
#notice.error, #refresh-error { border-color: var(--bad); color: var(--bad); }
#refresh-error { margin: 0.5rem 0; }
button { font: inherit; cursor: pointer; }
button.danger, button.reap { color: var(--bad); }
dialog { max-width: 32rem; border: 1px solid var(--line); border-radius: 0.5rem; }
dialog::backdrop { background: #0006; }
dialog h2 { font-size: 1.1rem; margin-top: 0; }
dialog label { display: block; margin: 0.75rem 0; }
dialog input[name=reason] { display: block; width: 100%; margin-top: 0.25rem; }
.actions { display: flex; justify-content: flex-end; gap: 0.5rem; }
`;
