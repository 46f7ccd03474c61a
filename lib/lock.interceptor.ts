import { BadRequestException, ConflictException, ExecutionContext, HttpStatus, Injectable, ServiceUnavailableException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { HeldLock } from './held-lock.interface';
import {
  InvalidLockKeyError,
  LockBackendError,
  LockHeldError,
  LockLimitMismatchError,
  LockShuttingDownError,
  type LockTimeoutError,
} from './lock.errors';
import type { WithLockMetadata } from './with-lock.decorator';
import { SpaceLockService } from './space-lock.service';

type Contended = LockHeldError | LockTimeoutError;

/**
 * How a locked HTTP route talks HTTP: keys from the request, "held" as 503 with `Retry-After`,
 * a store failure as 503 without it, a bad key as 400. Protocol details live in small
 * protected methods; an app subclasses this and passes the subclass as the module's
 * `interceptor` option (it is built by Nest's injector, so it may inject what it needs).
 *
 * Not registered as a Nest interceptor: a locked route's trampoline calls `runLocked()` directly
 * (see `locked-method.ts`), so the route pays for no interceptor machinery (bench scenario 7),
 * and handlers of other transports lock from their arguments like provider methods. The lock
 * itself is taken by `SpaceLockService.runUnderLock`, the one "run under lock".
 */
@Injectable()
export class LockInterceptor {
  constructor(
    protected readonly reflector: Reflector,
    protected readonly locks: SpaceLockService,
  ) {}

  /**
   * Runs `work` holding the lock(s) `metadata` names for this call. A Promise result keeps the
   * lock until it settles, an Observable until it completes, errors or is unsubscribed (so a
   * stream keeps its lock while it emits). "Held" becomes `lockedException()` or, with
   * `onLocked: 'skip'`, `{ skipped }`; a store failure `backendException()`; a bad key
   * `invalidKeyException()`; a key held with another `limit` `limitMismatchException()`.
   */
  runLocked(context: ExecutionContext, metadata: WithLockMetadata, work: (locks: HeldLock[]) => unknown): Promise<unknown> {
    let keys: string[];
    try {
      keys = this.resolveKeys(context, metadata);
    } catch (error) {
      return Promise.reject(this.failedException(context, error));
    }
    return this.locks.runUnderLock(keys.length === 1 ? keys[0] : keys, metadata.callOptions, work, {
      holdsStreams: true,
      missed: (miss) => {
        const error = miss.error() as Contended;
        if (metadata.options.onLocked === 'skip') return { skipped: error instanceof LockHeldError ? error.reason : 'lock-held' };
        throw this.lockedException(context, error);
      },
      failed: (error) => this.failedException(context, error),
    });
  }

  /** Keys for this call; a request that lacks a value a template needs is the client's error (400). */
  protected resolveKeys(context: ExecutionContext, metadata: WithLockMetadata): string[] {
    const source = this.templateSource(context);
    // Not validated here: taking the lock does that, and a bad key maps to 400 like a missing value.
    return metadata.keys.map((part) => (typeof part === 'function' ? (part as (ctx: ExecutionContext) => string)(context) : part.render(source)));
  }

  /**
   * What `{root.path}` placeholders read: the raw request itself (so a guard's `user` is there
   * too); bootstrap already refused roots other than `HTTP_TEMPLATE_ROOTS`.
   */
  protected templateSource(context: ExecutionContext): Record<string, unknown> {
    return context.switchToHttp().getRequest<Record<string, unknown>>() ?? {};
  }

  /** 503 with `Retry-After` from the holder's remaining lease (whole seconds, at least 1). */
  protected lockedException(context: ExecutionContext, error: Contended): unknown {
    const retryAfterSeconds = Math.max(1, Math.ceil((error.retryAfterMs ?? 1_000) / 1_000));
    this.setHeader(context, 'Retry-After', String(retryAfterSeconds));
    return new ServiceUnavailableException({
      statusCode: HttpStatus.SERVICE_UNAVAILABLE,
      error: 'Service Unavailable',
      message: `Lock "${error.key}" is held by another request; retry later`,
      key: error.key,
      retryAfterSeconds,
    });
  }

  /** 503 without `Retry-After`: the store is down (or we are shutting down), not busy. */
  protected backendException(_context: ExecutionContext, error: LockBackendError | LockShuttingDownError): unknown {
    return new ServiceUnavailableException({
      statusCode: HttpStatus.SERVICE_UNAVAILABLE,
      error: 'Service Unavailable',
      message:
        error instanceof LockBackendError ? `Lock backend "${error.backend}" is unavailable` : 'Shutting down; no new locks',
    });
  }

  protected invalidKeyException(_context: ExecutionContext, error: InvalidLockKeyError): unknown {
    return new BadRequestException({
      statusCode: HttpStatus.BAD_REQUEST,
      error: 'Bad Request',
      message: `Cannot build the lock key: ${error.reason}`,
    });
  }

  /**
   * 409 Conflict: the key is held with another `limit` than this route's (two routes or
   * services disagree on it, or a rolling deploy changes it). Not a 503: retrying does not help
   * until the other holders are gone, and the client did nothing wrong to get a 400.
   */
  protected limitMismatchException(_context: ExecutionContext, error: LockLimitMismatchError): unknown {
    return new ConflictException({
      statusCode: HttpStatus.CONFLICT,
      error: 'Conflict',
      message: `Lock "${error.key}" is in use with another limit`,
      key: error.key,
    });
  }

  /** Why the lock could not be taken, as this protocol answers it; other errors pass as they are. */
  private failedException(context: ExecutionContext, error: unknown): unknown {
    // Values come from the client: a bad one is the client's error (400), not ours.
    if (error instanceof InvalidLockKeyError) return this.invalidKeyException(context, error);
    if (error instanceof LockBackendError || error instanceof LockShuttingDownError) return this.backendException(context, error);
    if (error instanceof LockLimitMismatchError) return this.limitMismatchException(context, error);
    return error;
  }

  /** Works on Express (`res.setHeader`) and Fastify (`reply.header`). */
  protected setHeader(context: ExecutionContext, name: string, value: string): void {
    const response = context.switchToHttp().getResponse<{
      header?: (name: string, value: string) => unknown;
      setHeader?: (name: string, value: string) => unknown;
    }>();
    if (typeof response?.header === 'function') response.header(name, value);
    else response?.setHeader?.(name, value);
  }
}
