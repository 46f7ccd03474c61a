import { createParamDecorator, type ExecutionContext, type Type } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';

/**
 * `@WithLock` methods keep a thin trampoline in place of the original function. At bootstrap
 * `LockExplorer` gives each instance a runner per method; the trampoline looks it up at call
 * time. That way the lock applies even when another explorer captured the method before ours
 * ran (@nestjs/schedule's global module registers `@Cron` handlers in its own `onModuleInit`,
 * which Nest calls before non-global modules'), and every metadata key of the original
 * function is copied, so route, Swagger and scheduler metadata survive.
 *
 * HTTP routes lock in the trampoline too, not in an interceptor: Nest's interceptor machinery
 * alone costs about a third of a small route's throughput (bench scenario 7). The trampoline
 * learns the request from one extra route argument (`RouteLockContext`) that the explorer adds
 * before Nest registers the routes, and strips it before calling the handler.
 */
export type MethodRunner = (
  original: (...args: unknown[]) => unknown,
  self: object,
  args: unknown[],
  context: ExecutionContext | undefined,
) => unknown;

const RUNNERS = Symbol('nestjs-lock:runners');
const TRAMPOLINE = Symbol('nestjs-lock:trampoline');

/**
 * Asked before the runner (`@LeaderOnly`: are we the leader?); `false` skips the call, which
 * then returns `undefined`.
 */
export type MethodGuard = () => boolean;
const GUARDS = Symbol('nestjs-lock:guards');

type WithRunners = { [RUNNERS]?: Map<string | symbol, MethodRunner>; [GUARDS]?: Map<string | symbol, MethodGuard> };
type Trampoline = ((...args: unknown[]) => unknown) & { [TRAMPOLINE]?: true };

/** Trampoline -> the controller classes whose route passes it the context (a base class's method may serve several). */
const preparedRoutes = new WeakMap<Trampoline, WeakSet<Type>>();

/** The extra route argument: the call's execution context, for the runner only. */
export class RouteLockContext {
  constructor(readonly context: ExecutionContext) {}
}

const RouteContextParam = createParamDecorator((_data: unknown, context: ExecutionContext) => new RouteLockContext(context));

export function lockTrampoline(original: (...args: unknown[]) => unknown, name: string | symbol): (...args: unknown[]) => unknown {
  // `@WithLock` and `@LeaderOnly` on one method share one trampoline, in either order.
  if ((original as Trampoline)[TRAMPOLINE]) return original;
  const trampoline: Trampoline = function (this: WithRunners | undefined, ...args: unknown[]): unknown {
    const last = args[args.length - 1];
    let context: ExecutionContext | undefined;
    if (last instanceof RouteLockContext) {
      args.pop();
      context = last.context;
    }
    const guard = this?.[GUARDS]?.get(name);
    if (guard && !guard()) return undefined;
    const run = this?.[RUNNERS]?.get(name);
    return run ? run(original, this as object, args, context) : original.apply(this, args);
  };
  Object.defineProperty(trampoline, 'name', { value: original.name });
  Object.defineProperty(trampoline, TRAMPOLINE, { value: true });
  for (const key of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, original), trampoline);
  }
  return trampoline;
}

/** Does this route take its lock itself (prepared by `prepareLockedRoute`)? */
export function locksItself(type: Type, handler: unknown): boolean {
  return preparedRoutes.get(handler as Trampoline)?.has(type) ?? false;
}

/**
 * Makes route `name` of controller `type` a trampoline that receives its execution context.
 * Must run before Nest registers the routes (it reads route arguments then). Idempotent: the
 * class is shared by every app of the process.
 */
export function prepareLockedRoute(type: Type, name: string): void {
  if (locksItself(type, (type.prototype as Record<string, unknown>)[name])) return;
  const method = withTrampoline(type, name);
  // After every declared argument, so the trampoline finds it last.
  const declared = (Reflect.getMetadata(ROUTE_ARGS_METADATA, type, name) ?? {}) as Record<string, { index: number }>;
  const index = Object.values(declared).reduce((next, argument) => Math.max(next, argument.index + 1), 0);
  RouteContextParam()(type.prototype as object, name, index);
  const types = preparedRoutes.get(method) ?? new WeakSet<Type>();
  types.add(type);
  preparedRoutes.set(method, types);
}

/**
 * Method `name` of `type`, made a trampoline if it is none yet (under a class-level `@WithLock`
 * the method itself was never decorated). Must run before Nest reads the handler.
 */
export function withTrampoline(type: Type, name: string): (...args: unknown[]) => unknown {
  const prototype = type.prototype as Record<string, Trampoline>;
  const method = prototype[name];
  if (method[TRAMPOLINE]) return method;
  const trampoline = lockTrampoline(method, name) as Trampoline;
  Object.defineProperty(prototype, name, { value: trampoline, writable: true, configurable: true, enumerable: false });
  return trampoline;
}

/** Installs the runner for one method of one instance; idempotent per instance and method. */
export function installRunner(instance: object, name: string | symbol, runner: MethodRunner): void {
  const runners = ownMap<MethodRunner>(instance, RUNNERS);
  if (!runners.has(name)) runners.set(name, runner);
}

/** Installs the guard for one method of one instance (or prototype); idempotent per target and method. */
export function installGuard(instance: object, name: string | symbol, guard: MethodGuard): void {
  const guards = ownMap<MethodGuard>(instance, GUARDS);
  if (!guards.has(name)) guards.set(name, guard);
}

function ownMap<T>(instance: object, slot: typeof RUNNERS | typeof GUARDS): Map<string | symbol, T> {
  if (!Object.prototype.hasOwnProperty.call(instance, slot)) {
    Object.defineProperty(instance, slot, { value: new Map(), enumerable: false });
  }
  return (instance as Record<symbol, Map<string | symbol, T>>)[slot];
}
