import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';

/**
 * The sample's guard for the lock admin routes and page: requests from this machine only.
 * A real app puts its own role check here (session, JWT, mTLS) instead.
 */
@Injectable()
export class LocalhostOnlyGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const { ip } = context.switchToHttp().getRequest<{ ip?: string }>();
    return ip === '127.0.0.1' || ip === '::1' || ip === '::ffff:127.0.0.1';
  }
}
