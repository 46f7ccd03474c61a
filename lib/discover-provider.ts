import type { DiscoveryService } from '@nestjs/core';

/**
 * The instance another package provides under a class named one of `classNames`, found by name and not
 * by class, so the package is never loaded here (optional peers: `@nestjs/terminus`,
 * `@nestjs/event-emitter`) and a second copy of it still matches. `undefined` when the app has none.
 */
export function discoverProvider<T>(discovery: DiscoveryService, classNames: readonly string[], isInstance: (value: unknown) => value is T): T | undefined {
  for (const wrapper of discovery.getProviders()) {
    const token = wrapper.token;
    if (typeof token === 'function' && classNames.includes(token.name) && isInstance(wrapper.instance)) return wrapper.instance;
  }
  return undefined;
}
