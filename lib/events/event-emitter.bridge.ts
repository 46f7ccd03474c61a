import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { discoverProvider } from '../discover-provider';
import { SpaceLockService } from '../space-lock.service';

interface EventEmitterLike {
  emit(event: string, ...values: unknown[]): unknown;
  emitAsync(event: string, ...values: unknown[]): unknown;
}

/** `@nestjs/event-emitter` provides eventemitter2's class, whose function is named `EventEmitter`: tell it by its own methods. */
function isEventEmitter2(value: unknown): value is EventEmitterLike {
  const candidate = value as EventEmitterLike | null;
  return typeof candidate === 'object' && candidate !== null && typeof candidate.emit === 'function' && typeof candidate.emitAsync === 'function';
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
    const emitter = discoverProvider(this.discovery, ['EventEmitter2', 'EventEmitter'], isEventEmitter2);
    if (emitter) this.stop = this.locks.onLockEvent((event) => emitter.emit(`lock.${event.type}`, event));
  }

  onApplicationShutdown(): void {
    this.stop?.();
    this.stop = undefined;
  }
}
