import { SetMetadata } from '@nestjs/common';
import { lockTrampoline } from '../locked-method';
import { leaderKey } from './leader-key';

export const LEADER_ONLY_METADATA = 'nestjs-lock:leader-only';

/**
 * Run the decorated provider method (or a controller's `@EventPattern` / `@MessagePattern`
 * handler: one consumer for the whole service) only while this replica leads `name`; elsewhere the call is
 * skipped (returns `undefined`, logged at debug). The module campaigns for every name used here
 * from bootstrap to shutdown. Composes with `@Cron`/`@Interval`/`@WithLock` in any order.
 *
 * ```ts
 * @Cron('0 * * * * *')
 * @LeaderOnly('billing')
 * chargeDueInvoices() {}
 * ```
 */
export function LeaderOnly(name: string): MethodDecorator {
  leaderKey(name); // a bad name fails where it is written
  return (target, propertyKey, descriptor: PropertyDescriptor) => {
    SetMetadata(LEADER_ONLY_METADATA, name)(target, propertyKey, descriptor);
    // The same thin trampoline as @WithLock: @nestjs/schedule captures the method before our
    // explorer runs; the explorer gives each instance the guard the trampoline asks.
    if (typeof descriptor.value === 'function') {
      descriptor.value = lockTrampoline(descriptor.value as (...args: unknown[]) => unknown, propertyKey);
    }
    return descriptor;
  };
}
