import {
  BadRequestException,
  Body,
  CanActivate,
  ConflictException,
  Controller,
  DynamicModule,
  Get,
  HttpCode,
  Inject,
  Module,
  NotFoundException,
  Post,
  Query,
  Req,
  ServiceUnavailableException,
  UseGuards,
  type ModuleMetadata,
  type Type,
} from '@nestjs/common';
import type { LockInfo } from '../held-lock.interface';
import type { ForceReleaseOutcome } from '../lock-backend.interface';
import { InvalidLockKeyError, LockBackendError, LockOptionsError } from '../lock.errors';
import { SpaceLockService } from '../space-lock.service';

export interface LockAdminModuleOptions {
  /**
   * Who may see and reap locks. Required and non-empty: the module refuses to register
   * without a guard, because these routes show hosts and pids and can evict any holder.
   */
  guards: (Type<CanActivate> | CanActivate)[];
  /** Route prefix. Default `'admin/locks'`. */
  path?: string;
  /** Modules whose providers the guards need. `LockModule` itself must be registered with `isGlobal: true`. */
  imports?: ModuleMetadata['imports'];
  /** Whom a reap is attributed to in the warn log. Default `admin-http:<request ip>`. */
  caller?: (request: unknown) => string;
}

/** Body of `POST <path>/reap`. */
export interface ReapRequestBody {
  key: string;
  reason: string;
  expectFencingToken?: number;
}

/**
 * Opt-in HTTP routes over the operator API (never imported by `LockModule`):
 * `GET <path>?prefix=&limit=` (list), `GET <path>/holders?key=` (inspect),
 * `POST <path>/reap` `{ key, reason, expectFencingToken? }` (forceRelease: 200 released,
 * 404 not-held, 409 changed-hands / held-by-live-process). Lease tokens are never exposed.
 */
@Module({})
export class LockAdminModule {
  static forRoot(options: LockAdminModuleOptions): DynamicModule {
    assertGuards(options);
    return {
      module: LockAdminModule,
      imports: options.imports ?? [],
      controllers: [createAdminController(options)],
    };
  }
}

function assertGuards(options: LockAdminModuleOptions | undefined): void {
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
}

// The controller is built per forRoot call: its route prefix and guards are decorator arguments.
function createAdminController(options: LockAdminModuleOptions): Type {
  const callerOf = options.caller ?? ((request: unknown) => `admin-http:${(request as { ip?: string }).ip ?? 'unknown'}`);

  @Controller(options.path ?? 'admin/locks')
  @UseGuards(...options.guards)
  class LockAdminController {
    constructor(@Inject(SpaceLockService) private readonly locks: SpaceLockService) {}

    @Get()
    list(@Query('prefix') prefix?: string, @Query('limit') limit?: string): Promise<LockInfo[]> {
      return toHttp(() => this.locks.list({ prefix, limit: limit === undefined ? undefined : wholeNumber('limit', limit) }));
    }

    @Get('holders')
    holders(@Query('key') key: unknown): Promise<LockInfo[]> {
      return toHttp(() => this.locks.inspectAll(key as string));
    }

    @Post('reap')
    @HttpCode(200)
    async reap(@Body() body: unknown, @Req() request: unknown): Promise<{ key: string } & ForceReleaseOutcome> {
      const { key, reason, expectFencingToken } = (body ?? {}) as Partial<ReapRequestBody>;
      if (expectFencingToken !== undefined && (!Number.isSafeInteger(expectFencingToken) || expectFencingToken < 0)) {
        throw new BadRequestException('expectFencingToken must be a non-negative integer');
      }
      const outcome = await toHttp(() =>
        this.locks.forceRelease(key as string, { reason: reason as string, expectFencingToken, caller: callerOf(request) }),
      );
      const answer = { key: key as string, ...outcome };
      if (outcome.outcome === 'not-held') throw new NotFoundException(answer);
      if (outcome.outcome !== 'released') throw new ConflictException(answer);
      return answer;
    }
  }
  return LockAdminController;
}

function wholeNumber(name: string, raw: string): number {
  if (!/^\d+$/.test(raw)) throw new BadRequestException(`${name} must be a whole number`);
  return Number(raw);
}

/** Library errors as HTTP answers: bad input is the client's, an unreachable store is ours. */
async function toHttp<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof InvalidLockKeyError || error instanceof LockOptionsError) throw new BadRequestException(error.message);
    if (error instanceof LockBackendError) throw new ServiceUnavailableException(error.message);
    throw error;
  }
}
