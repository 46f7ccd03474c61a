import { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { Observable } from 'rxjs';
import type { SkipReason } from '../held-lock.interface';
import { Lease } from '../lease';
import type { Attempt, CallOptions, SetAttempt } from '../lock-attempt';
import { errorMessage } from '../lock.errors';
import type { LockAttemptEventBase, LockAttemptOutcome, LockEvent } from './lock-event.interface';

export type LockEventListener = (event: LockEvent) => void;

/**
 * The one stream of lock events of a module instance. The parts that live the events emit
 * them (docs/ARCHITECTURE.md); users, the `@nestjs/event-emitter` bridge and OpenTelemetry
 * listen. Free while nobody listens: every emitter asks `active` first and builds nothing
 * otherwise. A listener that throws is logged and never disturbs a lock.
 */
export class LockEvents {
  private readonly logger = new Logger('SpaceLockService');
  private listeners: LockEventListener[] = [];
  private attempts = 0;
  /** Somebody listens: build and emit events. */
  active = false;
  /** Every event, as an Observable (subscribing adds a listener; unsubscribing removes it). */
  readonly stream = new Observable<LockEvent>((subscriber) => this.listen((event) => subscriber.next(event)));

  constructor(readonly backend: string) {}

  /** Returns the unsubscribe function. */
  listen(listener: LockEventListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('A lock event listener must be a function');
    this.listeners = [...this.listeners, listener];
    this.active = true;
    return () => {
      this.listeners = this.listeners.filter((candidate) => candidate !== listener);
      this.active = this.listeners.length > 0;
    };
  }

  emit(event: LockEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.logger.error(`A lock event listener threw on "${event.type}": ${errorMessage(error)}`);
      }
    }
  }

  /** Follow one acquisition (only while `active`). */
  watch(keys: readonly string[], options: CallOptions): AttemptWatch {
    return new AttemptWatch(this, { key: keys[0], keys, name: options.name, mode: options.mode, backend: this.backend, attemptId: ++this.attempts });
  }

  /** A held lease ended by its holder's release. */
  released(lease: Lease): void {
    const { key, name, mode, fencingToken } = lease;
    this.emit({ type: 'released', key, name, mode, backend: this.backend, fencingToken, heldMs: Math.max(0, Date.now() - lease.acquiredAt) });
  }
}

/** The events of one acquisition, from the call to its lease (or miss, or failure). */
export class AttemptWatch {
  private readonly startedAt = performance.now();
  private waitingSince = -1;

  constructor(
    private readonly events: LockEvents,
    private readonly base: LockAttemptEventBase,
  ) {}

  /** Found taken; said once per acquisition. */
  contended(waiting: boolean): void {
    if (this.waitingSince >= 0) return;
    this.waitingSince = waiting ? performance.now() : Infinity;
    this.events.emit({ ...this.base, type: 'contended', waiting, startedAt: performance.timeOrigin + this.startedAt });
  }

  handedOver(via: 'local' | 'store'): void {
    this.events.emit({ ...this.base, type: 'handed-over', via });
  }

  /** `attempt` (one key's, or a set's taken in one store call), told when it ends or fails. */
  follow<T extends Attempt | SetAttempt>(attempt: Promise<T>): Promise<T> {
    return attempt.then(
      (result) => {
        this.ended(result);
        return result;
      },
      (error: unknown) => {
        this.failed(error);
        throw error;
      },
    );
  }

  private ended(result: Attempt | SetAttempt): void {
    if (result instanceof Lease) this.acquired([result]);
    else if ('leases' in result) this.acquired(result.leases);
    else if ('missed' in result) this.missed(result.missed[0].skipped);
    else this.missed(result.skipped);
  }

  private acquired(leases: readonly Lease[]): void {
    const durationMs = performance.now() - this.startedAt;
    this.waitEnded('acquired');
    this.events.emit({ ...this.base, type: 'acquired', durationMs, waited: this.waited, fencingToken: leases[0].fencingToken });
  }

  private missed(reason: SkipReason): void {
    const durationMs = performance.now() - this.startedAt;
    const outcome = this.waited ? 'timeout' : 'held';
    this.waitEnded(outcome);
    this.events.emit({ ...this.base, type: 'missed', durationMs, outcome, reason });
  }

  private failed(error: unknown): void {
    const durationMs = performance.now() - this.startedAt;
    this.waitEnded('error');
    this.events.emit({ ...this.base, type: 'failed', durationMs, error });
  }

  private get waited(): boolean {
    return this.waitingSince >= 0 && this.waitingSince !== Infinity;
  }

  private waitEnded(outcome: LockAttemptOutcome): void {
    if (this.waited) this.events.emit({ ...this.base, type: 'waited', durationMs: performance.now() - this.waitingSince, outcome });
  }
}
