import { ForbiddenException, UnsupportedMediaTypeException, type CanActivate } from '@nestjs/common';
import { LockOptionsError } from '../lock.errors';
import type { LockAdminModuleOptions, LockAdminPageOptions } from './lock-admin-options.interface';

/** What the admin routes read of a request, on Express and Fastify alike. */
export interface AdminRequest {
  ip?: string;
  headers: Record<string, string | string[] | undefined>;
  /** The path and query as asked (Express moves `url` under a mount point, never `originalUrl`). */
  url: string;
  originalUrl?: string;
}

export const DEFAULT_REFRESH_MS = 2_000;
const MIN_REFRESH_MS = 500;

/** The options `forRoot` was given, checked: a guard is mandatory, the page's options sane. */
export function assertAdminOptions(options: LockAdminModuleOptions | undefined): asserts options is LockAdminModuleOptions {
  const guards: unknown = options?.guards;
  const isGuard = (guard: unknown): boolean =>
    typeof guard === 'function' ||
    (typeof guard === 'object' && guard !== null && typeof (guard as CanActivate).canActivate === 'function');
  if (!Array.isArray(guards) || guards.length === 0 || !guards.every(isGuard)) {
    throw new LockOptionsError(
      'LockAdminModule.forRoot needs guards: [YourGuard] (a CanActivate class or instance); ' +
        'it will not expose lock holders or reaping without one',
    );
  }
  const ui: unknown = options?.ui;
  if (ui === undefined || ui === false) return;
  if (typeof ui !== 'object' || ui === null) throw new LockOptionsError('LockAdminModule ui must be false or { refreshMs? }');
  const refreshMs = (ui as LockAdminPageOptions).refreshMs;
  if (refreshMs !== undefined && (!Number.isSafeInteger(refreshMs) || refreshMs < MIN_REFRESH_MS)) {
    throw new LockOptionsError(`LockAdminModule ui.refreshMs must be an integer of at least ${MIN_REFRESH_MS} (ms)`);
  }
}

export function defaultCaller(request: unknown): string {
  return `admin-http:${(request as AdminRequest).ip ?? 'unknown'}`;
}

/**
 * A reap changes state, and a browser sends the operator's cookies along with any form another
 * site makes it post. Such a form can send neither a JSON body nor, in current browsers, hide
 * that it comes from another site: refuse both, after the guards and before the store is asked.
 */
export function assertReapRequest(request: AdminRequest): void {
  if (header(request, 'sec-fetch-site') === 'cross-site') throw new ForbiddenException('reap requests from another site are refused');
  const type = header(request, 'content-type');
  if (type !== undefined && !/^application\/json\s*(;|$)/i.test(type)) {
    throw new UnsupportedMediaTypeException('reap takes a JSON body (content-type: application/json)');
  }
}

function header(request: AdminRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
