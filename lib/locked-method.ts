/**
 * `@WithLock` methods keep a thin trampoline in place of the original function. At bootstrap
 * `LockExplorer` gives each provider instance a runner per method; the trampoline looks it up
 * at call time. That way the lock applies even when another explorer captured the method
 * before ours ran (@nestjs/schedule's global module registers `@Cron` handlers in its own
 * `onModuleInit`, which Nest calls before non-global modules'), and every metadata key of the
 * original function is copied, so route, Swagger and scheduler metadata survive.
 */
export type MethodRunner = (original: (...args: unknown[]) => unknown, self: object, args: unknown[]) => Promise<unknown>;

const RUNNERS = Symbol('nestjs-lock:runners');

type WithRunners = { [RUNNERS]?: Map<string | symbol, MethodRunner> };

export function lockTrampoline(original: (...args: unknown[]) => unknown, name: string | symbol): (...args: unknown[]) => unknown {
  const trampoline = function (this: WithRunners | undefined, ...args: unknown[]): unknown {
    const run = this?.[RUNNERS]?.get(name);
    return run ? run(original, this as object, args) : original.apply(this, args);
  };
  Object.defineProperty(trampoline, 'name', { value: original.name });
  for (const key of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, original), trampoline);
  }
  return trampoline;
}

/** Installs the runner for one method of one instance; idempotent per instance and method. */
export function installRunner(instance: object, name: string | symbol, runner: MethodRunner): void {
  const target = instance as WithRunners;
  if (!Object.prototype.hasOwnProperty.call(target, RUNNERS)) {
    Object.defineProperty(target, RUNNERS, { value: new Map(), enumerable: false });
  }
  const runners = target[RUNNERS] as Map<string | symbol, MethodRunner>;
  if (!runners.has(name)) runners.set(name, runner);
}
