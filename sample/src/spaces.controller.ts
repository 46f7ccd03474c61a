import { Controller, Get, Param, ParseIntPipe, Post, Query, DefaultValuePipe } from '@nestjs/common';
import { CurrentLock, SpaceLockService, WithLock, type HeldLock } from '../../lib';
import { SpacesService } from './spaces.service';

@Controller('spaces')
export class SpacesController {
  constructor(
    private readonly spaces: SpacesService,
    private readonly locks: SpaceLockService,
  ) {}

  /** 201 for the first caller; 503 + Retry-After for everyone else until it finishes. */
  @Post(':spaceId/sync')
  @WithLock('space:{params.spaceId}')
  sync(
    @Param('spaceId') spaceId: string,
    @Query('seconds', new DefaultValuePipe(5), ParseIntPipe) seconds: number,
    @CurrentLock() lock: HeldLock,
  ): Promise<object> {
    return this.spaces.sync(spaceId, lock, seconds);
  }

  /** Same lock from code: answers `{ skipped: ... }` instead of 503. */
  @Post(':spaceId/sync-from-code')
  syncFromCode(@Param('spaceId') spaceId: string): Promise<object> {
    return this.spaces.syncFromCode(spaceId);
  }

  /** Who holds it, since when, and for how much longer. */
  @Get(':spaceId/lock')
  async inspect(@Param('spaceId') spaceId: string): Promise<object> {
    return (await this.locks.inspect(`space:${spaceId}`)) ?? { free: true };
  }
}
