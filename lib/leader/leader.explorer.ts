import { Injectable, Logger, OnApplicationBootstrap, OnModuleInit, type Type } from '@nestjs/common';
import { METHOD_METADATA } from '@nestjs/common/constants';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { LockOptionsError } from '../lock.errors';
import { installGuard } from '../locked-method';
import { SpaceLockService } from '../space-lock.service';
import type { LeaderHandle } from './leader.interfaces';
import { LEADER_ONLY_METADATA } from './leader-only.decorator';

/**
 * Finds `@LeaderOnly` methods at module init (as @nestjs/schedule finds `@Cron`): on providers
 * and on controllers' message and event handlers (a microservice consumer), never on HTTP
 * routes (a request reaches whichever replica the load balancer picks). Gives each the guard its
 * trampoline asks, and campaigns for their names at bootstrap.
 */
@Injectable()
export class LeaderExplorer implements OnModuleInit, OnApplicationBootstrap {
  private readonly logger = new Logger('LeaderOnly');
  private readonly handles = new Map<string, LeaderHandle | undefined>();

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly locks: SpaceLockService,
  ) {}

  onModuleInit(): void {
    const controllers = new Set(this.discovery.getControllers());
    for (const wrapper of [...this.discovery.getProviders(), ...controllers]) {
      const instance = wrapper.instance as object | undefined;
      const isSingleton = !wrapper.isTransient && wrapper.isDependencyTreeStatic() && typeof instance === 'object' && instance !== null;
      // Request-scoped and transient instances come later: their guard goes on the prototype.
      // A singleton's own prototype: a useFactory/useValue provider's metatype is no class.
      const prototype = isSingleton
        ? ((Object.getPrototypeOf(instance) as object | null) ?? undefined)
        : (((wrapper.metatype as Type | undefined)?.prototype as object | undefined) ?? undefined);
      const target = isSingleton ? (instance as object) : prototype;
      if (!target || !prototype) continue;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const name = Reflect.getMetadata(LEADER_ONLY_METADATA, (prototype as Record<string, object>)[method]) as string | undefined;
        if (name === undefined) continue;
        const where = `${String(wrapper.name)}.${method}()`;
        if (controllers.has(wrapper) && Reflect.getMetadata(METHOD_METADATA, (prototype as Record<string, object>)[method]) !== undefined) {
          throw new LockOptionsError(
            `@LeaderOnly on the HTTP route ${where}: requests reach any replica, so only the leader's would run; put it on a provider method or a message/event handler`,
          );
        }
        this.handles.set(name, undefined);
        installGuard(target, method, () => this.leads(name, where));
      }
    }
  }

  onApplicationBootstrap(): void {
    for (const name of this.handles.keys()) this.handles.set(name, this.locks.campaign(name));
  }

  private leads(name: string, where: string): boolean {
    if (this.handles.get(name)?.isLeader) return true;
    this.logger.debug(`Skipped ${where}: not the leader of "${name}"`);
    return false;
  }
}
