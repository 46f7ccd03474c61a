import {
  BadRequestException,
  CallHandler,
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
  LockShuttingDownError,
  LockTimeoutError,
} from './lock.errors';
import { assertValidKey } from './lock-options.validation';
import { locksItself } from './locked-method';
import type { WithLockMetadata } from './with-lock.decorator';
import { SpaceLockService } from './space-lock.service';

/** The request fields HTTP key templates may read. */
export const HTTP_TEMPLATE_ROOTS = ['params', 'query', 'headers', 'body', 'user'] as const;

type Contended = LockHeldError | LockTimeoutError;

/**
 * Takes the lock(s) named by `@WithLock` around a handler and answers 503 with `Retry-After`
 * while another holder has them. Protocol details live in small protected methods so an app
 * can subclass this for GraphQL, RPC or WebSockets.
 *
 * HTTP routes do not pass through `intercept()`: their trampoline calls `runLocked()` directly
 * (see `locked-method.ts`), so a locked route pays for no interceptor. `intercept()` serves
 * the other transports (RPC and WebSocket handlers) and passes a prepared route through.
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
    if (!metadata || locksItself(context.getClass(), context.getHandler())) return next.handle();
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
   * `onLocked: 'skip'`, `{ skipped }`; a store failure `backendException()`.
   */
  async runLocked(context: ExecutionContext, metadata: WithLockMetadata, work: (locks: HeldLock[]) => unknown): Promise<unknown> {
    const keys = this.resolveKeys(context, metadata);
    const { callOptions } = metadata;
    let held: HeldLock[];
    try {
      held = keys.length === 1 ? [await this.locks.acquire(keys[0], callOptions)] : await this.locks.acquireMany(keys, callOptions);
    } catch (error) {
      if (error instanceof LockHeldError || error instanceof LockTimeoutError) {
        if (metadata.options.onLocked === 'skip') return { skipped: error instanceof LockHeldError ? error.reason : 'lock-held' };
        throw this.lockedException(context, error);
      }
      if (error instanceof LockBackendError || error instanceof LockShuttingDownError) {
        throw this.backendException(context, error);
      }
      throw error;
    }
    const release = (): Promise<void> => this.locks.releaseAll(held);
    let result: unknown;
    try {
      result = await work(held);
    } catch (error) {
      await release();
      throw error;
    }
    if (isObservable(result)) return releasedWhenDone(result, release);
    await release();
    return result;
  }

  /** Keys for this call, or 400 when the request lacks a value a template needs. */
  protected resolveKeys(context: ExecutionContext, metadata: WithLockMetadata): string[] {
    const source = this.templateSource(context);
    try {
      return metadata.keys.map((part) => {
        const key = typeof part === 'function' ? (part as (ctx: ExecutionContext) => string)(context) : part.render(source);
        // Values come from the client: a bad one is the client's error (400), not ours.
        assertValidKey(key);
        return key;
      });
    } catch (error) {
      if (error instanceof InvalidLockKeyError) throw this.invalidKeyException(context, error);
      throw error;
    }
  }

  /**
   * What `{root.path}` placeholders read: the raw request itself (so a guard's `user` is there
   * too); bootstrap already refused roots other than `HTTP_TEMPLATE_ROOTS`.
   */
  protected templateSource(context: ExecutionContext): Record<string, unknown> {
    return context.switchToHttp().getRequest<Record<string, unknown>>() ?? {};
  }

  /**
   * For `@CurrentLock()` when this runs as an interceptor on an HTTP route (a subclass applied
   * by hand). Locked routes do not need it: their trampoline hands the lock to the argument
   * itself, and adding a property to the request object is measurably slow on a hot route.
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

/**
 * `source`, with `release` run once when it completes (before the completion is passed on, so
 * Nest writes a plain response only after the lock is free), errors (before the error) or is
 * unsubscribed early. One Observable instead of an operator chain: this is on every request.
 */
function releasedWhenDone<T>(source: Observable<T>, release: () => Promise<void>): Observable<T> {
  return new Observable<T>((subscriber) => {
    let released: Promise<void> | undefined;
    const releaseOnce = (): Promise<void> => (released ??= release());
    const subscription = source.subscribe({
      next: (value) => subscriber.next(value),
      error: (error: unknown) => void releaseOnce().then(() => subscriber.error(error)),
      complete: () => void releaseOnce().then(() => subscriber.complete()),
    });
    return () => {
      subscription.unsubscribe();
      void releaseOnce();
    };
  });
}
