import {
  BadRequestException,
  CallHandler,
  ConflictException,
  ExecutionContext,
  HttpStatus,
  Injectable,
  NestInterceptor,
  ServiceUnavailableException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { isObservable, Observable, of } from 'rxjs';
import type { HeldLock } from './held-lock.interface';
import { LOCK_REQUEST_PROPERTY, WITH_LOCK_METADATA } from './lock.constants';
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
 * Takes the lock(s) named by `@WithLock` around a handler and answers 503 with `Retry-After`
 * while another holder has them. Protocol details live in small protected methods so an app
 * can subclass this for GraphQL, RPC or WebSockets.
 *
 * HTTP routes do not pass through `intercept()`: their trampoline calls `runLocked()` directly
 * (see `locked-method.ts`), so a locked route pays for no interceptor. `intercept()` serves
 * the other transports (RPC and WebSocket handlers) and passes HTTP calls through. The lock
 * itself is taken by `SpaceLockService.runUnderLock`, the one "run under lock".
 */
@Injectable()
export class LockInterceptor implements NestInterceptor {
  constructor(
    protected readonly reflector: Reflector,
    protected readonly locks: SpaceLockService,
  ) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    const metadata = this.reflector.getAllAndOverride<WithLockMetadata | undefined>(WITH_LOCK_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    // Every @WithLock HTTP route locks in its trampoline (see `locked-method.ts`): no double lock.
    if (!metadata || context.getType() === 'http') return next.handle();
    const result = await this.runLocked(context, metadata, (held) => {
      this.exposeLocks(context, held);
      return next.handle();
    });
    return isObservable(result) ? result : of(result);
  }

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

  /**
   * Called with the locks before the handler of an intercepted call runs: a subclass may hand
   * them to its transport's handler here. `intercept()` passes HTTP calls through (their
   * trampoline hands the lock to `@CurrentLock()` itself, and adding a property to the
   * request object is measurably slow on a hot route), so the HTTP branch serves only a
   * subclass that calls `runLocked` from its own `intercept()` on a route without `@WithLock`.
   */
  protected exposeLocks(context: ExecutionContext, locks: HeldLock[]): void {
    if (context.getType() !== 'http') return;
    const request = context.switchToHttp().getRequest<Record<string, unknown> | undefined>();
    if (request) request[LOCK_REQUEST_PROPERTY] = locks;
  }

  /** 503 with `Retry-After` from the holder's remaining lease (whole seconds, at least 1). */
  protected lockedException(context: ExecutionContext, error: Contended): unknown {
    if (context.getType() !== 'http') return error;
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
  protected backendException(context: ExecutionContext, error: LockBackendError | LockShuttingDownError): unknown {
    if (context.getType() !== 'http') return error;
    return new ServiceUnavailableException({
      statusCode: HttpStatus.SERVICE_UNAVAILABLE,
      error: 'Service Unavailable',
      message:
        error instanceof LockBackendError ? `Lock backend "${error.backend}" is unavailable` : 'Shutting down; no new locks',
    });
  }

  protected invalidKeyException(context: ExecutionContext, error: InvalidLockKeyError): unknown {
    if (context.getType() !== 'http') return error;
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
  protected limitMismatchException(context: ExecutionContext, error: LockLimitMismatchError): unknown {
    if (context.getType() !== 'http') return error;
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
