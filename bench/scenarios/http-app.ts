import {
  Controller,
  Get,
  Injectable,
  Module,
  Param,
  UseInterceptors,
  type CallHandler,
  type INestApplication,
  type NestInterceptor,
} from '@nestjs/common';
import type { Observable } from 'rxjs';
import { NestFactory } from '@nestjs/core';
import { LockModule, WithLock } from '../../lib';
import { oursOptions, type LockContext } from '../harness/locks';

/** Control: what any (async) interceptor costs in Nest, without a lock. */
@Injectable()
class NoopInterceptor implements NestInterceptor {
  async intercept(_context: unknown, next: CallHandler): Promise<Observable<unknown>> {
    return next.handle();
  }
}

@Controller()
class BenchController {
  @Get('noop/:id')
  @UseInterceptors(NoopInterceptor)
  noop(@Param('id') id: string): { id: string } {
    return { id };
  }

  @Get('plain/:id')
  plain(@Param('id') id: string): { id: string } {
    return { id };
  }

  @Get('locked/:id')
  @WithLock('item:{params.id}')
  locked(@Param('id') id: string): { id: string } {
    return { id };
  }
}

/** The scenario 7 app (Express): the same handler with and without `@WithLock`. Returns its port. */
export async function startHttpApp(backend: 'memory' | 'redis', context: LockContext): Promise<number> {
  @Module({
    imports: [LockModule.forRoot(oursOptions(backend === 'memory' ? 'ours-memory' : 'ours-redis', context))],
    controllers: [BenchController],
  })
  class BenchAppModule {}
  const app: INestApplication = await NestFactory.create(BenchAppModule, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return address.port;
}
