import type { CanActivate, ModuleMetadata, Type } from '@nestjs/common';

export interface LockAdminModuleOptions {
  /**
   * Who may see and reap locks. Required and non-empty: the module refuses to register
   * without a guard, because these routes show hosts and pids and can evict any holder.
   * They guard every route of the module, the page and its script and stylesheet included.
   */
  guards: (Type<CanActivate> | CanActivate)[];
  /** Route prefix. Default `'admin/locks'`. */
  path?: string;
  /** Modules whose providers the guards need. `LockModule` itself must be registered with `isGlobal: true`. */
  imports?: ModuleMetadata['imports'];
  /** Whom a reap is attributed to in the warn log. Default `admin-http:<request ip>`. */
  caller?: (request: unknown) => string;
  /** The live page at `GET <path>/ui`. Default: served, with the defaults below; `false`: JSON routes only. */
  ui?: LockAdminPageOptions | false;
}

export interface LockAdminPageOptions {
  /** How often the page reloads its table, in ms. Default 2 000, at least 500. */
  refreshMs?: number;
}

/** Body of `POST <path>/reap`. */
export interface ReapRequestBody {
  key: string;
  reason: string;
  expectFencingToken?: number;
}
