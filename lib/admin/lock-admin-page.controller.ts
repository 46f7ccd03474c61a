import { applyDecorators, Controller, Get, Header, Inject, Query, Req, UseGuards, type Type } from '@nestjs/common';
import { toView } from '../cli/format';
import { SpaceLockService } from '../space-lock.service';
import { DEFAULT_REFRESH_MS, type AdminRequest } from './admin-access';
import { limitParam, toHttp } from './admin-http';
import { PAGE_CONTENT_SECURITY_POLICY, PAGE_SCRIPT, PAGE_STYLES } from './admin-page.assets';
import { renderHolders, renderPage, type HolderRow, type HoldersModel } from './admin-page.view';
import type { LockAdminModuleOptions, LockAdminPageOptions } from './lock-admin-options.interface';

/** Rows the page lists unless `?limit=` says otherwise. */
const PAGE_LIMIT = 500;

/** Headers of everything under `<path>/ui`: the strict CSP, no sniffing, no referrer, no framing. */
function PageResponse(contentType: string, cache: 'no-store' | 'no-cache'): MethodDecorator {
  return applyDecorators(
    Header('Content-Type', contentType),
    Header('Content-Security-Policy', PAGE_CONTENT_SECURITY_POLICY),
    Header('X-Content-Type-Options', 'nosniff'),
    Header('Referrer-Policy', 'no-referrer'),
    Header('X-Frame-Options', 'DENY'),
    Header('Cache-Control', cache),
  );
}

/**
 * The live page: `GET <path>/ui` (server-rendered), `GET <path>/ui/rows` (the table it reloads),
 * `GET <path>/ui/page.js` and `…/page.css`. Reaps go to the JSON route `POST <path>/reap`.
 * Same prefix and guards as the JSON controller.
 */
export function createAdminPageController(options: LockAdminModuleOptions, page: LockAdminPageOptions): Type {
  const refreshMs = page.refreshMs ?? DEFAULT_REFRESH_MS;

  @Controller(options.path ?? 'admin/locks')
  @UseGuards(...options.guards)
  class LockAdminPageController {
    constructor(@Inject(SpaceLockService) private readonly locks: SpaceLockService) {}

    @Get('ui')
    @PageResponse('text/html; charset=utf-8', 'no-store')
    async page(@Query('prefix') prefix: unknown, @Query('limit') limit: string | undefined, @Req() request: AdminRequest): Promise<string> {
      const holders = await this.holders(prefix, limit);
      const path = (request.originalUrl ?? request.url).split('?')[0];
      return renderPage({ ...holders, limitParam: limit, refreshMs, here: path.endsWith('/') ? '' : 'ui/' });
    }

    @Get('ui/rows')
    @PageResponse('text/html; charset=utf-8', 'no-store')
    async rows(@Query('prefix') prefix: unknown, @Query('limit') limit?: string): Promise<string> {
      return renderHolders(await this.holders(prefix, limit));
    }

    @Get('ui/page.js')
    @PageResponse('text/javascript; charset=utf-8', 'no-cache')
    script(): string {
      return PAGE_SCRIPT;
    }

    @Get('ui/page.css')
    @PageResponse('text/css; charset=utf-8', 'no-cache')
    styles(): string {
      return PAGE_STYLES;
    }

    /** Holders sorted by key, each with its key's waiters; one store question per key, all at once. */
    private holders(prefix: unknown, limit: string | undefined): Promise<HoldersModel> {
      return toHttp(async () => {
        const at = Date.now();
        const listLimit = limitParam(limit) ?? PAGE_LIMIT;
        const found = await this.locks.list({ prefix: prefix as string | undefined, limit: listLimit });
        const keys = [...new Set(found.map((holder) => holder.key))];
        const waiters = new Map(await Promise.all(keys.map(async (key) => [key, await this.locks.waiters(key)] as const)));
        const holders: HolderRow[] = found
          .map((holder) => ({ ...toView(holder), waiters: waiters.get(holder.key) ?? { queued: null, local: 0 } }))
          .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.fencingToken - b.fencingToken));
        return { holders, prefix: (prefix as string | undefined) ?? '', limit: listLimit, at };
      });
    }
  }
  return LockAdminPageController;
}
