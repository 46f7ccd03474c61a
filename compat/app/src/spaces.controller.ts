import { Controller, Injectable, Param, Post } from '@nestjs/common';
import { WithLock } from 'nestjs-lock';

@Injectable()
export class SpacesService {
  sync(spaceId: string): { synced: string } {
    return { synced: spaceId };
  }
}

@Controller('spaces')
export class SpacesController {
  // Injected by type: the constructor's decorator metadata must survive the test runner's transform.
  constructor(private readonly spaces: SpacesService) {}

  @Post(':spaceId/sync')
  @WithLock('space:{params.spaceId}')
  sync(@Param('spaceId') spaceId: string): { synced: string } {
    return this.spaces.sync(spaceId);
  }
}
