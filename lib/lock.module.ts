import { DynamicModule, Inject, Module, Provider } from '@nestjs/common';
import { DiscoveryModule, ModuleRef } from '@nestjs/core';
import { createLockBackend } from './backends/lock-backend.factory';
import { LockBackend } from './lock-backend.interface';
import { LOCK_MODULE_OPTIONS, LOCK_OPTIONS } from './lock.constants';
import { LockOptionsError } from './lock.errors';
import { LockExplorer } from './lock.explorer';
import { LeaderExplorer } from './leader/leader.explorer';
import { LockInterceptor } from './lock.interceptor';
import type {
  LockModuleAsyncOptions,
  LockModuleOptions,
  LockOptionsFactory,
  ResolvedLockModuleOptions,
} from './lock-module-options.interface';
import { resolveLockOptions } from './lock-options.validation';
import { SpaceLockService } from './space-lock.service';
import { LockEventEmitterBridge } from './events/event-emitter.bridge';
import { LockHealthIndicator } from './health/lock-health.indicator';

/** Injects the validated module options (`ResolvedLockModuleOptions`). */
export const InjectLockOptions = (): ParameterDecorator => Inject(LOCK_OPTIONS);
/** Injects the active `LockBackend`. */
export const InjectLockBackend = (): ParameterDecorator => Inject(LockBackend);

const sharedProviders: Provider[] = [
  {
    provide: LOCK_OPTIONS,
    useFactory: (options: LockModuleOptions) => resolveLockOptions(options),
    inject: [LOCK_MODULE_OPTIONS],
  },
  {
    provide: LockBackend,
    useFactory: (options: ResolvedLockModuleOptions, moduleRef: ModuleRef) => createLockBackend({ options, moduleRef }),
    inject: [LOCK_OPTIONS, ModuleRef],
  },
  SpaceLockService,
  {
    provide: LockInterceptor,
    // Built by Nest's injector, so a subclass can inject its own dependencies (from this
    // module's scope: global providers and `forRootAsync` imports).
    useFactory: (options: ResolvedLockModuleOptions, moduleRef: ModuleRef) => {
      const Interceptor = options.interceptor ?? LockInterceptor;
      if (Interceptor !== LockInterceptor && !(Interceptor.prototype instanceof LockInterceptor)) {
        throw new LockOptionsError(`interceptor ${Interceptor.name} must extend LockInterceptor`);
      }
      return moduleRef.create(Interceptor);
    },
    inject: [LOCK_OPTIONS, ModuleRef],
  },
  LockExplorer,
  LeaderExplorer,
  LockEventEmitterBridge,
  LockHealthIndicator,
];

const exported = [SpaceLockService, LockInterceptor, LOCK_OPTIONS, LockBackend, LockHealthIndicator];

@Module({})
export class LockModule {
  static forRoot(options: LockModuleOptions & { isGlobal?: boolean } = {}): DynamicModule {
    const { isGlobal, ...moduleOptions } = options;
    // Fail at the call site, not deep inside bootstrap.
    resolveLockOptions(moduleOptions);
    return {
      module: LockModule,
      global: isGlobal,
      imports: [DiscoveryModule],
      providers: [{ provide: LOCK_MODULE_OPTIONS, useValue: moduleOptions }, ...sharedProviders],
      exports: exported,
    };
  }

  static forRootAsync(options: LockModuleAsyncOptions): DynamicModule {
    return {
      module: LockModule,
      global: options.isGlobal,
      imports: [DiscoveryModule, ...(options.imports ?? [])],
      providers: [...asyncOptionsProviders(options), ...sharedProviders],
      exports: exported,
    };
  }
}

function asyncOptionsProviders(options: LockModuleAsyncOptions): Provider[] {
  if (options.useFactory) {
    return [{ provide: LOCK_MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] }];
  }
  const factoryClass = options.useClass ?? options.useExisting;
  if (!factoryClass) throw new LockOptionsError('forRootAsync needs useFactory, useClass or useExisting');
  const fromFactory: Provider = {
    provide: LOCK_MODULE_OPTIONS,
    useFactory: (factory: LockOptionsFactory) => factory.createLockOptions(),
    inject: [factoryClass],
  };
  return options.useClass ? [{ provide: options.useClass, useClass: options.useClass }, fromFactory] : [fromFactory];
}
