import { Injectable, Logger, OnApplicationBootstrap, OnModuleInit, type Type } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { installGuard } from '../locked-method';
import { SpaceLockService } from '../space-lock.service';
import type { LeaderHandle } from './leader.interfaces';
import { LEADER_ONLY_METADATA } from './leader-only.decorator';

/**
 * Finds `@LeaderOnly` provider methods at module init (as @nestjs/schedule finds `@Cron`),
 * gives each the guard its trampoline asks, and campaigns for their names at bootstrap.
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
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as object | undefined;
      const isSingleton = !wrapper.isTransient && wrapper.isDependencyTreeStatic() && typeof instance === 'object' && instance !== null;
      // Request-scoped and transient instances come later: their guard goes on the prototype.
      const prototype = ((wrapper.metatype as Type | undefined)?.prototype as object | undefined) ?? undefined;
      const target = isSingleton ? (instance as object) : prototype;
      if (!target || !prototype) continue;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const name = Reflect.getMetadata(LEADER_ONLY_METADATA, (prototype as Record<string, object>)[method]) as string | undefined;
        if (name === undefined) continue;
        this.handles.set(name, undefined);
        const where = `${String(wrapper.name)}.${method}()`;
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
