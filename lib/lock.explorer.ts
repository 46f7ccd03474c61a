import { Inject, Injectable, Logger, OnModuleInit, type Type } from '@nestjs/common';
import { METHOD_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper';
import { WITH_LOCK_METADATA } from './lock.constants';
import { LockBackend } from './lock-backend.interface';
import { LockNotSupportedError, LockOptionsError } from './lock.errors';
import type { LockRunHandlers } from './lock-runner';
import { LockInterceptor } from './lock.interceptor';
import { installRunner, locksItself, prepareLockedRoute, withTrampoline } from './locked-method';
import { withCurrentLock } from './current-lock.decorator';
import type { LockKeyPart, WithLockMetadata } from './with-lock.decorator';
import { SpaceLockService } from './space-lock.service';
import { scheduledMinHold } from './schedule/scheduled-min-hold';

/** What @nestjs/microservices' `@MessagePattern`/`@EventPattern` and @nestjs/websockets' `@SubscribeMessage` set on a handler. */
const OTHER_TRANSPORT_HANDLER_METADATA = ['microservices:pattern', 'message'];

/**
 * At bootstrap, finds `@WithLock` methods and gives each instance the runner its method
 * trampoline calls (see `locked-method.ts`): HTTP routes read their keys from the request and
 * map "held" to 503 through `LockInterceptor`'s protected methods; every other locked method
 * (providers: scheduled jobs, consumers, services; WebSocket gateways; microservice and
 * GraphQL handlers) reads its keys from its arguments. Templates are checked here, so a typo
 * fails at start-up, not on the first call.
 */
@Injectable()
export class LockExplorer implements OnModuleInit {
  private readonly logger = new Logger('LockExplorer');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly locks: SpaceLockService,
    private readonly interceptor: LockInterceptor,
    @Inject(LockBackend) private readonly backend: LockBackend,
  ) {
    // Here, not in onModuleInit: Nest registers routes (reading their arguments) between
    // creating the providers and calling onModuleInit.
    this.prepareRoutes();
  }

  onModuleInit(): void {
    for (const wrapper of this.discovery.getControllers()) {
      const type = wrapper.metatype as Type | undefined;
      const classMetadata = type ? this.reflector.get<WithLockMetadata | undefined>(WITH_LOCK_METADATA, type) : undefined;
      this.forEachLockedMethod(wrapper, classMetadata, (metadata, name, target, method) => {
        if (type && locksItself(type, method)) {
          this.check(metadata, name, 'http');
          this.lockRoute(target, name, metadata);
        } else if (classMetadata !== metadata || isOtherTransportHandler(method)) {
          // A method of its own @WithLock, or a microservice handler under the class's.
          this.check(metadata, name, 'arguments');
          this.lockCall(target, name, metadata, 'throw', isOtherTransportHandler(method));
        }
      });
    }
    // A controller class may be listed as a provider too: its routes lock as routes (above), not from arguments.
    const controllerTypes = new Set(this.discovery.getControllers().map((wrapper) => wrapper.metatype));
    for (const wrapper of this.discovery.getProviders()) {
      const type = wrapper.metatype as Type | undefined;
      const isController = type !== undefined && controllerTypes.has(type);
      if (typeof type === 'function' && !isController && this.reflector.get(WITH_LOCK_METADATA, type)) {
        throw new LockOptionsError(`@WithLock on the class ${type.name} only applies to controllers; put it on methods`);
      }
      this.forEachLockedMethod(wrapper, undefined, (metadata, name, target, method) => {
        if (isController && typeof method === 'function' && Reflect.getMetadata(METHOD_METADATA, method) !== undefined) return;
        this.check(metadata, name, 'arguments');
        this.lockCall(target, name, metadata, 'skip', isOtherTransportHandler(method));
      });
    }
  }

  /**
   * Every HTTP route under `@WithLock` (its own or its controller's) gets a trampoline that
   * receives its execution context; a microservice handler under its controller's `@WithLock`
   * gets a trampoline (its runner reads the arguments).
   */
  private prepareRoutes(): void {
    for (const wrapper of this.discovery.getControllers()) {
      const type = wrapper.metatype as Type | undefined;
      if (typeof type !== 'function') continue;
      const classLocked = this.reflector.get<WithLockMetadata | undefined>(WITH_LOCK_METADATA, type) !== undefined;
      for (const name of this.scanner.getAllMethodNames(type.prototype as object)) {
        const method = (type.prototype as Record<string, unknown>)[name];
        if (typeof method !== 'function') continue;
        const isRoute = Reflect.getMetadata(METHOD_METADATA, method) !== undefined;
        if (isRoute && (classLocked || this.reflector.get(WITH_LOCK_METADATA, method) !== undefined)) prepareLockedRoute(type, name);
        else if (classLocked && isOtherTransportHandler(method)) withTrampoline(type, name);
      }
    }
  }

  private lockRoute(target: object, name: string, metadata: WithLockMetadata): void {
    installRunner(target, name, (original, self, args, context) => {
      if (!context) return original.apply(self, args); // called from code, not by Nest's router
      return this.interceptor.runLocked(context, metadata, (held) => original.apply(self, withCurrentLock(args, held)));
    });
  }

  /**
   * Visits every `@WithLock` method of a class (`classMetadata`: a controller's own, which
   * its methods' override). `target` is where its runner goes: the instance for singletons,
   * the prototype for request-scoped and transient providers (their instances are created
   * later; the trampoline finds the runner through the prototype chain).
   */
  private forEachLockedMethod(
    wrapper: InstanceWrapper,
    classMetadata: WithLockMetadata | undefined,
    visit: (metadata: WithLockMetadata, name: string, target: object, method: unknown) => void,
  ): void {
    const instance = wrapper.instance as object | undefined;
    const isSingleton = !wrapper.isTransient && wrapper.isDependencyTreeStatic() && typeof instance === 'object' && instance !== null;
    const prototype = isSingleton
      ? (Object.getPrototypeOf(instance) as object | null)
      : ((wrapper.metatype as Type | undefined)?.prototype as object | undefined);
    if (!prototype) return;
    for (const name of this.scanner.getAllMethodNames(prototype)) {
      const method = (prototype as Record<string, unknown>)[name];
      if (typeof method !== 'function') continue;
      const metadata = this.reflector.get<WithLockMetadata | undefined>(WITH_LOCK_METADATA, method) ?? classMetadata;
      if (metadata) visit(metadata, name, isSingleton ? (instance as object) : prototype, method);
    }
  }

  private check(metadata: WithLockMetadata, name: string, kind: 'http' | 'arguments'): void {
    if (metadata.options.mode === 'shared' && !this.backend.capabilities.shared) {
      throw new LockNotSupportedError(`${name}() asks for a shared lock; the ${this.backend.name} backend has none`);
    }
    if ((metadata.options.limit ?? 1) > 1 && !this.backend.capabilities.limit) {
      throw new LockNotSupportedError(`${name}() asks for a lock with limit ${metadata.options.limit}; the ${this.backend.name} backend has no semaphores`);
    }
    this.checkTemplates(metadata, name, kind);
  }

  private checkTemplates(metadata: WithLockMetadata, name: string, kind: 'http' | 'arguments'): void {
    for (const part of metadata.keys) {
      if (typeof part !== 'function') part.assertRoots(kind, `${name}()`);
    }
  }

  /** A method whose keys come from its arguments; `defaultOnLocked` when `@WithLock` names none. */
  private lockCall(target: object, name: string, metadata: WithLockMetadata, defaultOnLocked: 'throw' | 'skip', holdsStreams = false): void {
    const { callOptions } = metadata;
    const onLocked = metadata.options.onLocked ?? defaultOnLocked;
    const handlers: LockRunHandlers<undefined> = {
      // A transport subscribes to a handler's Observable: the lock is kept while it runs, as on HTTP routes.
      holdsStreams,
      missed: (miss) => {
        const error = miss.error();
        if (onLocked !== 'skip') throw error;
        this.logger.debug(`Skipped ${name}(): ${error.message}`);
        return undefined;
      },
    };
    // A method @nestjs/schedule runs holds its lock for a minimum derived from its schedule,
    // unless @WithLock names one: exactly one run per tick across replicas (see scheduled-min-hold.ts).
    const scheduledHold =
      metadata.options.minHoldMs === undefined ? scheduledMinHold((target as Record<string, object>)[name]) : undefined;
    // async: a key that cannot be built rejects, as the lock does, never throws at the caller.
    installRunner(target, name, async (original, self, args) => {
      const keys = metadata.keys.map((part) => renderFromArguments(part, args));
      const options = scheduledHold ? { ...callOptions, minHoldMs: scheduledHold() } : callOptions;
      return this.locks.runUnderLock(keys, options, (held) => original.apply(self, withCurrentLock(args, held)), handlers);
    });
  }
}

function renderFromArguments(part: LockKeyPart, args: unknown[]): string {
  if (typeof part === 'function') return (part as (...values: unknown[]) => string)(...args);
  return part.render(Object.fromEntries(args.map((value, index) => [String(index), value])));
}

function isOtherTransportHandler(method: unknown): boolean {
  return typeof method === 'function' && OTHER_TRANSPORT_HANDLER_METADATA.some((key) => Reflect.hasMetadata(key, method));
}
