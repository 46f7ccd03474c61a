import { Controller, Get, Module, Param, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { LockModule, WithLock } from '../../lib';
import { oursOptions, type LockContext } from '../harness/locks';

@Controller()
class BenchController {
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
