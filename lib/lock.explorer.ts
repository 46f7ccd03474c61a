import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper';
import { WITH_LOCK_METADATA } from './lock.constants';
import { InvalidLockKeyError, LockHeldError, LockTimeoutError } from './lock.errors';
import { HTTP_TEMPLATE_ROOTS } from './lock.interceptor';
import { installRunner } from './locked-method';
import type { LockKeyPart, WithLockMetadata } from './with-lock.decorator';
import { SpaceLockService } from './space-lock.service';

const ARGUMENT_ROOT = /^\d+$/;

/**
 * At bootstrap, finds `@WithLock` methods on providers (scheduled jobs, consumers, services)
 * and gives each instance the runner its method trampolines call (see `locked-method.ts`).
 * Controllers are left to `LockInterceptor`, so no call is ever locked twice; their
 * templates are checked here so a typo fails at start-up, not on the first request.
 */
@Injectable()
export class LockExplorer implements OnModuleInit {
  private readonly logger = new Logger('LockExplorer');

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
    private readonly locks: SpaceLockService,
  ) {}

  onModuleInit(): void {
    for (const wrapper of this.discovery.getControllers()) {
      this.forEachLockedMethod(wrapper, (metadata, name) => this.checkTemplates(metadata, name, 'http'));
    }
    for (const wrapper of this.discovery.getProviders()) {
      this.forEachLockedMethod(wrapper, (metadata, name, instance) => {
        this.checkTemplates(metadata, name, 'arguments');
        this.wrap(instance, name, metadata);
      });
    }
  }

  private forEachLockedMethod(
    wrapper: InstanceWrapper,
    visit: (metadata: WithLockMetadata, name: string, instance: Record<string, unknown>) => void,
  ): void {
    const instance = wrapper.instance as Record<string, unknown> | undefined;
    if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) return;
    const prototype = Object.getPrototypeOf(instance) as object;
    for (const name of this.scanner.getAllMethodNames(prototype)) {
      const method = instance[name];
      if (typeof method !== 'function') continue;
      const metadata = this.reflector.get<WithLockMetadata | undefined>(WITH_LOCK_METADATA, method);
      if (metadata) visit(metadata, name, instance);
    }
  }

  private checkTemplates(metadata: WithLockMetadata, name: string, kind: 'http' | 'arguments'): void {
    for (const part of metadata.keys) {
      if (typeof part === 'function') continue;
      for (const root of part.roots()) {
        const ok = kind === 'http' ? (HTTP_TEMPLATE_ROOTS as readonly string[]).includes(root) : ARGUMENT_ROOT.test(root);
        if (!ok) {
          throw new InvalidLockKeyError(
            part.source,
            `{${root}…} in ${name}() must start with ${kind === 'http' ? HTTP_TEMPLATE_ROOTS.join(', ') : 'an argument index like {0}'}`,
          );
        }
      }
    }
  }

  private wrap(instance: Record<string, unknown>, name: string, metadata: WithLockMetadata): void {
    const { onLocked = 'skip', ...callOptions } = metadata.options;
    installRunner(instance, name, async (original, self, args) => {
      const keys = metadata.keys.map((part) => renderFromArguments(part, args));
      let held;
      try {
        held = await this.locks.acquireMany(keys, callOptions);
      } catch (error) {
        if (onLocked === 'skip' && (error instanceof LockHeldError || error instanceof LockTimeoutError)) {
          this.logger.debug(`Skipped ${name}(): ${error.message}`);
          return undefined;
        }
        throw error;
      }
      try {
        return await original.apply(self, args);
      } finally {
        await this.locks.releaseAll(held);
      }
    });
  }
}

function renderFromArguments(part: LockKeyPart, args: unknown[]): string {
  if (typeof part === 'function') return (part as (...values: unknown[]) => string)(...args);
  return part.render(Object.fromEntries(args.map((value, index) => [String(index), value])));
}
