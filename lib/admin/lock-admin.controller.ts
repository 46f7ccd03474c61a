import {
  BadRequestException,
  Body,
  ConflictException,
  Controller,
  Get,
  HttpCode,
  Inject,
  NotFoundException,
  Post,
  Query,
  Req,
  UseGuards,
  type Type,
} from '@nestjs/common';
import type { LockInfo } from '../held-lock.interface';
import type { ForceReleaseOutcome } from '../lock-backend.interface';
import { SpaceLockService } from '../space-lock.service';
import { assertReapRequest, defaultCaller, type AdminRequest } from './admin-access';
import { limitParam, toHttp } from './admin-http';
import type { LockAdminModuleOptions, ReapRequestBody } from './lock-admin-options.interface';

/**
 * The JSON routes over the operator API: `GET <path>?prefix=&limit=` (list),
 * `GET <path>/holders?key=` (inspect), `POST <path>/reap` `{ key, reason, expectFencingToken? }`
 * (forceRelease: 200 released, 404 not-held, 409 changed-hands / held-by-live-process).
 * Built per `forRoot` call: the route prefix and guards are decorator arguments.
 */
export function createAdminController(options: LockAdminModuleOptions): Type {
  const callerOf = options.caller ?? defaultCaller;

  @Controller(options.path ?? 'admin/locks')
  @UseGuards(...options.guards)
  class LockAdminController {
    constructor(@Inject(SpaceLockService) private readonly locks: SpaceLockService) {}

    @Get()
    list(@Query('prefix') prefix?: string, @Query('limit') limit?: string): Promise<LockInfo[]> {
      return toHttp(() => this.locks.list({ prefix, limit: limitParam(limit) }));
    }

    @Get('holders')
    holders(@Query('key') key: unknown): Promise<LockInfo[]> {
      return toHttp(() => this.locks.inspectAll(key as string));
    }

    @Post('reap')
    @HttpCode(200)
    async reap(@Body() body: unknown, @Req() request: AdminRequest): Promise<{ key: string } & ForceReleaseOutcome> {
      assertReapRequest(request);
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
