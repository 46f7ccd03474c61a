/**
 * `next(value)` at once when `value` is plain, once it settles when it is a Promise: the kernel
 * mechanism answers synchronously, and a grant or release on it then never waits for a
 * microtask, while the exclusive-create mechanism's calls stay asynchronous.
 */
export function andThen<T, U>(value: T | Promise<T>, next: (settled: T) => U | Promise<U>): U | Promise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}
