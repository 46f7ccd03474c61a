import { Body, Controller, DefaultValuePipe, Get, Param, ParseIntPipe, Post, Put, Query } from '@nestjs/common';
import { CurrentLock, WithLock, type HeldLock } from '../../lib';
import { EXPORTS_PER_TENANT } from './lock-backend';

/** Readers together, writers alone (a readers-writer lock), and "at most N at once" (a semaphore). */
@Controller()
export class DocumentsController {
  private readonly documents = new Map<string, string>();

  /** Any number of readers at once, on every replica; 503 while a writer has the document. */
  @Get('documents/:id')
  @WithLock('document:{params.id}', { mode: 'shared' })
  async read(
    @Param('id') id: string,
    @Query('seconds', new DefaultValuePipe(0), ParseIntPipe) seconds: number,
    @CurrentLock() lock: HeldLock,
  ): Promise<object> {
    await pause(seconds, lock.signal);
    return { id, text: this.documents.get(id) ?? '', mode: lock.mode };
  }

  /** One writer, with no reader beside it; waits up to 2 s for the readers to finish (new readers queue behind it). */
  @Put('documents/:id')
  @WithLock('document:{params.id}', { waitMs: 2_000 })
  write(@Param('id') id: string, @Body() body: { text?: string }, @CurrentLock() lock: HeldLock): object {
    this.documents.set(id, String(body?.text ?? ''));
    return { id, fencingToken: lock.fencingToken };
  }

  /** At most EXPORTS_PER_TENANT exports per tenant at once; one more answers 503 until a permit frees. */
  @Post('exports/:tenant')
  @WithLock('export:{params.tenant}', { limit: EXPORTS_PER_TENANT })
  async export(
    @Param('tenant') tenant: string,
    @Query('seconds', new DefaultValuePipe(5), ParseIntPipe) seconds: number,
    @CurrentLock() lock: HeldLock,
  ): Promise<object> {
    await pause(seconds, lock.signal);
    return { tenant, permit: lock.fencingToken, limit: lock.limit ?? 1 };
  }
}

/** Work that stops at once when its lease is lost. */
function pause(seconds: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, seconds * 1_000);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });
}
