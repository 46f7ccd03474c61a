import { Injectable, Logger } from '@nestjs/common';
import { isSkipped, SpaceLockService, type HeldLock } from '../../lib';

/** Pretend git-sync: one writer per space, whichever replica or route asks. */
@Injectable()
export class SpacesService {
  private readonly logger = new Logger(SpacesService.name);
  /** Highest fencing token seen per space: what a fenced resource would keep. */
  private readonly lastToken = new Map<string, number>();

  constructor(private readonly locks: SpaceLockService) {}

  /** Called by the route while `@WithLock` holds the space. */
  async sync(spaceId: string, lock: HeldLock, seconds: number): Promise<object> {
    await this.work(spaceId, lock, seconds);
    return { spaceId, fencingToken: lock.fencingToken, seconds };
  }

  /** The same work from code, without a decorator: skip sentinels instead of 503. */
  async syncFromCode(spaceId: string): Promise<object> {
    const result = await this.locks.withSpaceLock(`space:${spaceId}`, (lock) => this.sync(spaceId, lock, 1));
    if (isSkipped(result)) this.logger.log(`sync of ${spaceId} skipped: ${result.skipped}`);
    return result;
  }

  private async work(spaceId: string, lock: HeldLock, seconds: number): Promise<void> {
    const last = this.lastToken.get(spaceId) ?? 0;
    if (lock.fencingToken <= last) throw new Error(`stale writer for ${spaceId} (token ${lock.fencingToken} ≤ ${last})`);
    this.lastToken.set(spaceId, lock.fencingToken);
    // Long work listens to the lease: stop at once if it is lost.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, seconds * 1_000);
      lock.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(lock.signal.reason);
      });
    });
  }
}
