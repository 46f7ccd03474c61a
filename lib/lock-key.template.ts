import type { ExecutionContext } from '@nestjs/common';
import { InvalidLockKeyError } from './lock.errors';

/**
 * A lock key: a literal, a template with `{path}` placeholders, or a function.
 * On controller handlers placeholders read the request (`{params.id}`, `{query.x}`,
 * `{headers.x}`, `{body.x}`, `{user.x}`) and a function gets the `ExecutionContext`;
 * on provider methods they read the arguments (`{0}`, `{0.id}`) and a function gets the
 * arguments.
 */
export type LockKeyTemplate = string | HttpLockKeyFunction | ArgumentsLockKeyFunction<never[]>;

/** Key function for controller handlers. */
export type HttpLockKeyFunction = (context: ExecutionContext) => string;

/** Key function for provider methods: gets the method's arguments. */
export type ArgumentsLockKeyFunction<Args extends unknown[]> = (...args: Args) => string;

type Part = { literal: string } | { path: string[] };

/** Thrown when a placeholder has no usable value; HTTP turns it into 400. */
export class MissingLockKeyValueError extends InvalidLockKeyError {}

/** The request fields HTTP key templates may read. */
export const HTTP_TEMPLATE_ROOTS = ['params', 'query', 'headers', 'body', 'user'] as const;
const ARGUMENT_ROOT = /^\d+$/;

const PLACEHOLDER = /\{([^{}]*)\}/g;
const PATH = /^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$/;

/** A template parsed once, at decoration time, so a typo fails at bootstrap and not per request. */
export class CompiledKeyTemplate {
  private readonly parts: Part[] = [];

  constructor(readonly source: string) {
    if (typeof source !== 'string' || source.length === 0) throw new InvalidLockKeyError(source, 'template must be a non-empty string');
    let last = 0;
    for (const match of source.matchAll(PLACEHOLDER)) {
      const index = match.index ?? 0;
      this.pushLiteral(source.slice(last, index));
      const path = match[1].trim();
      if (!PATH.test(path)) throw new InvalidLockKeyError(source, `bad placeholder {${match[1]}}`);
      const segments = path.split('.');
      // Node lower-cases incoming header names; `{headers.X-Tenant}` means `x-tenant`.
      if (segments[0] === 'headers' && segments.length === 2) segments[1] = segments[1].toLowerCase();
      this.parts.push({ path: segments });
      last = index + match[0].length;
    }
    this.pushLiteral(source.slice(last));
  }

  /** First path segment of every placeholder (`params`, `0`, ...). */
  roots(): string[] {
    return this.parts.flatMap((part) => ('path' in part ? [part.path[0]] : []));
  }

  /**
   * Fails unless every placeholder reads what `kind` offers: the request's fields on HTTP
   * routes (`HTTP_TEMPLATE_ROOTS`), an argument index on provider methods. `where` names the
   * method in the error.
   */
  assertRoots(kind: 'http' | 'arguments', where: string): void {
    for (const root of this.roots()) {
      const ok = kind === 'http' ? (HTTP_TEMPLATE_ROOTS as readonly string[]).includes(root) : ARGUMENT_ROOT.test(root);
      if (!ok) {
        throw new InvalidLockKeyError(
          this.source,
          `{${root}…} in ${where} must start with ${kind === 'http' ? HTTP_TEMPLATE_ROOTS.join(', ') : 'an argument index like {0}'}`,
        );
      }
    }
  }

  /** Fill the placeholders from `root`; a missing, non-scalar or non-finite value is an error, never "undefined". */
  render(root: Record<string, unknown>): string {
    return this.parts
      .map((part) => {
        if ('literal' in part) return part.literal;
        const value = part.path.reduce<unknown>(
          (node, segment) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined),
          root,
        );
        if ((typeof value === 'string' && value.length > 0) || (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'bigint') {
          return String(value);
        }
        throw new MissingLockKeyValueError(this.source, `{${part.path.join('.')}} has no string or number value`);
      })
      .join('');
  }

  private pushLiteral(text: string): void {
    if (text.includes('{') || text.includes('}')) throw new InvalidLockKeyError(this.source, 'unbalanced braces');
    if (text) this.parts.push({ literal: text });
  }
}
