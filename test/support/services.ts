import { MemoryLockBackend, SpaceLockService, type LockBackend, type LockBackendCapabilities, type LockModuleOptions } from '../../lib';
import { resolveLockOptions } from '../../lib/lock-options.validation';

/** A service over `backend`, as the module would build it. */
export function serviceOn(backend: LockBackend, options: LockModuleOptions = {}): SpaceLockService {
  return new SpaceLockService(resolveLockOptions({ ...options, backend }), backend);
}

/** The memory backend as if it were a store across the network: its calls are bounded by `backendTimeoutMs`. */
export class RemoteMemoryBackend extends MemoryLockBackend {
  override readonly capabilities: LockBackendCapabilities = { shared: false, limit: false };
}

/** Returns `track`: every service passed to it is shut down after each test of the file. */
export function trackedServices(): (service: SpaceLockService) => SpaceLockService {
  const services: SpaceLockService[] = [];
  afterEach(async () => {
    await Promise.all(services.splice(0).map((service) => service.beforeApplicationShutdown()));
  });
  return (service) => {
    services.push(service);
    return service;
  };
}
