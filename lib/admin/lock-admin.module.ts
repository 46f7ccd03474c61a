import { Module, type DynamicModule } from '@nestjs/common';
import { assertAdminOptions } from './admin-access';
import { createAdminController } from './lock-admin.controller';
import { createAdminPageController } from './lock-admin-page.controller';
import type { LockAdminModuleOptions } from './lock-admin-options.interface';

/**
 * Opt-in HTTP routes over the operator API (never imported by `LockModule`), all behind the
 * guards the caller supplies: the JSON routes (`lock-admin.controller.ts`) and, unless
 * `ui: false`, the live page at `<path>/ui` (`lock-admin-page.controller.ts`).
 * Lease tokens are never exposed.
 */
@Module({})
export class LockAdminModule {
  static forRoot(options: LockAdminModuleOptions): DynamicModule {
    assertAdminOptions(options);
    const controllers = [createAdminController(options)];
    if (options.ui !== false) controllers.push(createAdminPageController(options, options.ui ?? {}));
    return { module: LockAdminModule, imports: options.imports ?? [], controllers };
  }
}
