import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { discoverProvider } from '../discover-provider';
import { SpaceLockService } from '../space-lock.service';

interface EventEmitterLike {
  emit(event: string, ...values: unknown[]): unknown;
}

function isEventEmitter(value: unknown): value is EventEmitterLike {
  return typeof value === 'object' && value !== null && typeof (value as EventEmitterLike).emit === 'function';
}

/**
 * When the app imports `EventEmitterModule` (`@nestjs/event-emitter`), every lock event is also
 * emitted there as `lock.<type>` (`@OnEvent('lock.lost')`). Without it, nothing happens and
 * nothing is loaded.
 */
@Injectable()
export class LockEventEmitterBridge implements OnApplicationBootstrap, OnApplicationShutdown {
  private stop?: () => void;

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly locks: SpaceLockService,
  ) {}

  onApplicationBootstrap(): void {
    if (this.stop) return;
    const emitter = discoverProvider(this.discovery, 'EventEmitter2', isEventEmitter);
    if (emitter) this.stop = this.locks.onLockEvent((event) => emitter.emit(`lock.${event.type}`, event));
  }

  onApplicationShutdown(): void {
    this.stop?.();
    this.stop = undefined;
  }
}
