import 'reflect-metadata';
import { CanActivate, ExecutionContext, Injectable, INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { LockAdminModule, LockModule, SpaceLockService, type HeldLock } from '../../lib';
import { tmpdir } from 'node:os';
import { until } from '../support/redis-server';
import { exited, PROCESS_TEST_TIMEOUT_MS, waitForLine } from '../support/processes';
import { lostPattern, startHolder, stopWorkers, uniquePrefix } from './ops-support';

/**
 * The live page in a real headless Chromium (Debian's `chromium`; `.ci/run` installs it),
 * against holders taken by other processes on the shared Redis.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const REDIS_URL = 'redis://127.0.0.1:6379';
/** The README's picture when UPDATE_SCREENSHOT=1; otherwise a scratch file, so a test run leaves the tree clean. */
const SCREENSHOT =
  process.env.UPDATE_SCREENSHOT === '1' ? join(__dirname, '..', '..', 'docs', 'admin-ui.png') : join(tmpdir(), `nestjs-lock-admin-ui-${process.pid}.png`);
/** A browser step waits up to 30 s; on a loaded 2-core machine a test takes several. */
const BROWSER_TEST_TIMEOUT_MS = 120_000;
const HOSTILE_KEY = 'space:<img src=x onerror="document.title=1">';

const runs = existsSync(CHROMIUM) || process.env.CI === 'true';
if (!runs) {
  // eslint-disable-next-line no-console
  console.warn(`admin page browser test SKIPPED: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH); under CI=true it runs and fails instead`);
}

/** The page's window as the init script sees it (this project compiles without the DOM lib). */
interface ViolationRecorder {
  cspViolations: string[];
  document: { addEventListener(type: 'securitypolicyviolation', listener: (event: { violatedDirective: string; blockedURI: string }) => void): void };
}

/** A browser session's consent: the cookie `role=admin`; `user` names who reaps in the log. */
@Injectable()
class AdminCookieGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return /(?:^|;\s*)role=admin(?:;|$)/.test(context.switchToHttp().getRequest<{ headers: { cookie?: string } }>().headers.cookie ?? '');
  }
}

function userOf(request: unknown): string {
  return /(?:^|;\s*)user=([a-z]+)/.exec((request as { headers: { cookie?: string } }).headers.cookie ?? '')?.[1] ?? 'unknown';
}

(runs ? describe : describe.skip)('LockAdminModule page in headless Chromium', () => {
  const keyPrefix = uniquePrefix('admin-ui');
  const warnings: string[] = [];
  let app: INestApplication;
  let locks: SpaceLockService;
  let base: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let worker: ChildProcess;
  let waiting: Promise<HeldLock | void>;
  const violations: string[] = [];

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        LockModule.forRoot({ isGlobal: true, backend: 'redis', redis: { url: REDIS_URL }, keyPrefix, ownerId: 'admin-app' }),
        LockAdminModule.forRoot({ guards: [AdminCookieGuard], caller: (request) => `admin:${userOf(request)}`, ui: { refreshMs: 500 } }),
      ],
    }).compile();
    moduleRef.useLogger({ log: () => undefined, error: () => undefined, warn: (message: unknown) => void warnings.push(String(message)) });
    app = moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    base = `${await app.getUrl()}/admin/locks`.replace('[::1]', '127.0.0.1');
    locks = app.get(SpaceLockService);

    // Another replica: its own process on the same Redis and key prefix. A second one is
    // killed while holding, so its short lease runs out without a release: a stale record.
    const store = { redis: REDIS_URL };
    const [holder, crashed] = await Promise.all([
      startHolder({ store, keyPrefix, ownerId: 'billing-worker', ttlMs: 6_000, heartbeatMs: 500 }, ['space:42', 'space:7', HOSTILE_KEY]),
      startHolder({ store, keyPrefix, ownerId: 'report-cron', ttlMs: 1_000 }, ['space:77']),
    ]);
    worker = holder;
    crashed.kill('SIGKILL');
    await exited(crashed);
    await until(async () => Boolean((await locks.inspect('space:77'))?.stale), 10_000, 'the killed holder shown stale');
    // This replica waits for one of the worker's keys: one waiter in the Redis queue.
    waiting = locks.acquire('space:7', { waitMs: 600_000 }).catch(() => undefined);
    await until(async () => (await locks.waiters('space:7')).queued === 1, 10_000, 'a queued waiter');

    browser = await chromium.launch({ executablePath: CHROMIUM });
    context = await browser.newContext({ viewport: { width: 1200, height: 560 }, colorScheme: 'light' });
    await context.addCookies([
      { name: 'role', value: 'admin', url: new URL(base).origin },
      { name: 'user', value: 'alice', url: new URL(base).origin },
    ]);
    page = await context.newPage();
    page.on('console', (message) => {
      if (/Content.Security.Policy|Trusted ?Type|Refused to/i.test(message.text())) violations.push(message.text());
    });
    page.on('pageerror', (error) => violations.push(`page error: ${error.message}`));
    // Through the DevTools protocol, so the page's own CSP does not apply to this listener.
    await page.addInitScript(() => {
      const scope = globalThis as unknown as ViolationRecorder;
      scope.cspViolations = [];
      scope.document.addEventListener('securitypolicyviolation', (event) => scope.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
    });
  }, PROCESS_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await waiting;
    await stopWorkers();
    await removeKeys(keyPrefix);
  });

  const row = (key: string) => page.locator('tr.holder').filter({ has: page.locator('td.key code').getByText(key, { exact: true }) });

  it('shows the other replica\'s holders, escaped, stale marks and waiters, under a strict CSP; refreshes and filters', async () => {
    const response = await page.goto(`${base}/ui`);
    expect(response?.status()).toBe(200);
    const csp = (await response?.allHeaders())?.['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("require-trusted-types-for 'script'");

    const held = row('space:42');
    await held.waitFor();
    expect(await held.locator('td.owner').innerText()).toContain('billing-worker');
    expect(await held.locator('td.owner').innerText()).toContain(`pid ${worker.pid}`);
    expect(await held.locator('td.owner .badge.local').count()).toBe(0);
    expect(Number(await held.locator('meter').getAttribute('max'))).toBe(6_000);

    // The key is text on the page, never an element; the handler in it never ran.
    expect(await row(HOSTILE_KEY).locator('td.key code').textContent()).toBe(HOSTILE_KEY);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.title()).toBe('Locks · nestjs-lock');

    expect(await row('space:77').locator('td.state').innerText()).toMatch(/stale/);
    expect(await row('space:7').locator('td.waiters').innerText()).toBe('1');

    // The page picks up a lock taken after it was loaded, without a reload.
    const late = await locks.acquire('space:late');
    await row('space:late').waitFor({ timeout: 10_000 });
    expect(await row('space:late').locator('.badge.local').innerText()).toBe('this instance');
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await late.release();
    await row('space:late').waitFor({ state: 'detached', timeout: 10_000 });

    await page.fill('input[name=prefix]', 'space:4');
    await Promise.all([page.waitForURL(/prefix=space%3A4/), page.click('form.filter button[type=submit]')]);
    expect(await page.locator('tr.holder td.key code').allTextContents()).toEqual(['space:42']);
    // Refreshes keep the filter.
    await page.waitForResponse((answer) => answer.url().includes('/ui/rows?prefix=space%3A4'));
    expect(await page.locator('tr.holder td.key code').allTextContents()).toEqual(['space:42']);

    expect(violations).toEqual([]);
    expect(await page.evaluate(() => (globalThis as unknown as ViolationRecorder).cspViolations)).toEqual([]);
  }, BROWSER_TEST_TIMEOUT_MS);

  it('reaps after a reason and a confirmation: the store frees the key, the holder learns it lost it', async () => {
    await page.goto(`${base}/ui?prefix=space:`);
    const before = await locks.inspect('space:42');
    await row('space:42').locator('button.reap').click();
    const dialog = page.locator('#reap-dialog');
    expect(await dialog.isVisible()).toBe(true);
    expect(await page.locator('#reap-key').textContent()).toBe('space:42');
    expect(await page.locator('#reap-fence').textContent()).toBe(String(before?.fencingToken));

    // No reason, no reap.
    await page.click('#reap-confirm');
    expect(await dialog.isVisible()).toBe(true);
    expect(await locks.inspect('space:42')).toMatchObject({ ownerId: 'billing-worker' });
    // Cancel leaves it alone too.
    await page.click('#reap-cancel');
    expect(await dialog.isVisible()).toBe(false);
    expect(await locks.inspect('space:42')).toMatchObject({ ownerId: 'billing-worker' });

    const lost = waitForLine(worker, lostPattern('space:42'), 30_000);
    await row('space:42').locator('button.reap').click();
    await page.fill('#reap-dialog input[name=reason]', 'stuck since the deploy');
    await page.click('#reap-confirm');
    await page.locator('#notice.ok').waitFor();
    expect(await page.locator('#notice').textContent()).toBe(`Reaped "space:42" (was billing-worker, fencing token ${before?.fencingToken}).`);
    await row('space:42').waitFor({ state: 'detached' });
    expect(await locks.inspect('space:42')).toBeNull();
    expect((await lost)[1]).toBe('taken-over');
    expect(warnings).toContainEqual(expect.stringContaining('forceRelease "space:42" by admin:alice (reason: stuck since the deploy): released'));
    expect(violations).toEqual([]);
  }, BROWSER_TEST_TIMEOUT_MS);

  it('reaps compare-aware: a key that changed hands since the page showed it is left to its new holder', async () => {
    await page.goto(`${base}/ui?prefix=space:`);
    await row(HOSTILE_KEY).locator('button.reap').click();
    // Meanwhile the lock passes to someone else (a new fencing token).
    await locks.forceRelease(HOSTILE_KEY, { reason: 'test: hand over' });
    const next = await locks.acquire(HOSTILE_KEY, { ownerId: 'new-holder' });
    await page.fill('#reap-dialog input[name=reason]', 'stuck');
    await page.click('#reap-confirm');
    await page.locator('#notice.error').waitFor();
    expect(await page.locator('#notice').textContent()).toBe(
      `Not reaped: "${HOSTILE_KEY}" changed hands (now new-holder, fencing token ${next.fencingToken}). Look again.`,
    );
    expect(await locks.inspect(HOSTILE_KEY)).toMatchObject({ ownerId: 'new-holder', fencingToken: next.fencingToken });
    await next.release();
  }, BROWSER_TEST_TIMEOUT_MS);

  it('answers 403 without the guard\'s consent: on the page, and on a reap from a page whose consent was withdrawn', async () => {
    const stranger = await browser.newContext();
    try {
      const denied = await (await stranger.newPage()).goto(`${base}/ui`);
      expect(denied?.status()).toBe(403);
    } finally {
      await stranger.close();
    }

    await page.goto(`${base}/ui?prefix=space:7`);
    await row('space:7').locator('button.reap').click();
    await context.clearCookies();
    await page.fill('#reap-dialog input[name=reason]', 'not mine to reap');
    await page.click('#reap-confirm');
    await page.locator('#notice.error').waitFor();
    expect(await page.locator('#notice').textContent()).toBe('Not reaped: you are not allowed to reap locks here (403).');
    expect(await locks.inspect('space:7')).toMatchObject({ ownerId: 'billing-worker' });
    // The table stops refreshing and says so.
    await page.locator('#refresh-error').waitFor();
    expect(await page.locator('#refresh-error').textContent()).toMatch(/^Could not refresh \(403 /);
  }, BROWSER_TEST_TIMEOUT_MS);
});

/** Remove what this suite left on the shared Redis (the killed holder's record, the worker's keys). */
async function removeKeys(keyPrefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `{${keyPrefix}*`, 'COUNT', 1_000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
