import { Logger } from '@nestjs/common';
import type { LockLostEvent } from './held-lock.interface';
import { performance } from 'node:perf_hooks';
import type { LockEvents } from './events/lock-events';
import type { Lease } from './lease';
import { errorMessage, LockLostError, type LockLostReason } from './lock.errors';

/**
 * A held lease that ended without its holder releasing it: its signal aborts, the loss is
 * logged and every `onLockLost` listener hears of it. Whoever kept the lease alive has
 * already stopped doing so.
 */
export class LeaseLoss {
  private readonly logger = new Logger('SpaceLockService');
  private readonly listeners = new Set<(event: LockLostEvent) => void>();

  /** Monotonic time of the last loss that was not a shutdown's (`-Infinity`: none yet): health reads it. */
  lastLostAt = -Infinity;

  constructor(
    private readonly onLockLost: ((event: LockLostEvent) => void) | undefined,
    private readonly events: LockEvents,
  ) {}

  /** Listen for leases this process loses while holding them. Returns the unsubscribe function. */
  listen(listener: (event: LockLostEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  lose(lease: Lease, reason: LockLostReason): void {
    if (lease.state !== 'held') return;
    lease.state = 'lost';
    const error = new LockLostError(lease.key, lease.fencingToken, reason);
    lease.abort(error);
    if (reason !== 'shutdown') {
      this.logger.warn(error.message);
      this.lastLostAt = performance.now();
    }
    if (this.events.active) {
      const { key, name, mode, fencingToken } = lease;
      this.events.emit({ type: 'lost', key, name, mode, backend: this.events.backend, fencingToken, reason });
    }
    const event: LockLostEvent = { key: lease.key, fencingToken: lease.fencingToken, reason };
    for (const listener of [...this.listeners, ...(this.onLockLost ? [this.onLockLost] : [])]) {
      try {
        listener(event);
      } catch (listenerError) {
        this.logger.error(`onLockLost listener threw: ${errorMessage(listenerError)}`);
      }
    }
  }
}
