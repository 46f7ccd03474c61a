import type { Logger } from '@nestjs/common';
import type { Cluster, Redis } from 'ioredis';
import { errorMessage } from '../../lock.errors';

type Waker = (message?: string) => void;

interface Channel {
  waiters: Set<Waker>;
  /** Settles when SUBSCRIBE was confirmed (or failed: then only timers wake the waiters). */
  subscribed: Promise<boolean>;
}

/**
 * Waiters of one backend share ONE subscriber connection. A channel is subscribed while at
 * least one waiter needs it and unsubscribed when the last one leaves.
 *
 * Pub/sub is only a hint: a message may be lost (reconnect, failover) or may have been sent
 * before our SUBSCRIBE took effect. So every wait (1) is bounded by its own timer and (2)
 * once subscribed, asks the store whether the lease still exists, which closes the window
 * between the caller's failed attempt and the subscription.
 */
export class ReleaseChannels {
  private subscriber?: Redis | Cluster;
  private readonly channels = new Map<string, Channel>();
  private closed = false;
  /** `SSUBSCRIBE` rather than `SUBSCRIBE` (see `PublishMode`); set before the first wait. */
  sharded = false;

  constructor(
    /** A subscriber connection; `sharded`: one that routes `SSUBSCRIBE` to each channel's shard. */
    private readonly connect: (sharded: boolean) => Redis | Cluster,
    private readonly logger: Logger,
  ) {}

  /**
   * Resolves with the message on a release message for `channel`, or without one when
   * `stillHeld` says the lease is gone, after `timeoutMs`, or on `signal` abort, whichever
   * comes first. Never rejects.
   */
  wait(channel: string, timeoutMs: number, signal: AbortSignal, stillHeld: () => Promise<boolean>): Promise<string | undefined> {
    if (this.closed || signal.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const entry = this.join(channel);
      const wake: Waker = (message) => {
        if (!entry.waiters.delete(wake)) return;
        clearTimeout(timer);
        signal.removeEventListener('abort', wakeWithout);
        if (entry.waiters.size === 0) this.leave(channel, entry);
        resolve(message);
      };
      const wakeWithout = (): void => wake();
      entry.waiters.add(wake);
      const timer = setTimeout(wakeWithout, timeoutMs);
      timer.unref();
      signal.addEventListener('abort', wakeWithout, { once: true });
      void entry.subscribed
        .then(async (subscribed) => {
          if (subscribed && entry.waiters.has(wake) && !(await stillHeld())) wake();
        })
        // The timer bounds the wait whatever the store says.
        .catch(() => undefined);
    });
  }

  /** Wakes every waiter and drops the subscriber connection (always ours: a duplicate). */
  close(): void {
    this.closed = true;
    for (const entry of this.channels.values()) [...entry.waiters].forEach((wake) => wake());
    this.channels.clear();
    this.subscriber?.disconnect();
    this.subscriber = undefined;
  }

  private join(channel: string): Channel {
    const existing = this.channels.get(channel);
    if (existing) return existing;
    const subscriber = this.connection();
    const entry: Channel = {
      waiters: new Set(),
      subscribed: (this.sharded ? subscriber.ssubscribe(channel) : subscriber.subscribe(channel)).then(
        () => true,
        (error: unknown) => {
          this.logger.debug(`SUBSCRIBE ${channel} failed: ${errorMessage(error)}; waiting on the timer`);
          return false;
        },
      ),
    };
    this.channels.set(channel, entry);
    return entry;
  }

  private leave(channel: string, entry: Channel): void {
    if (this.channels.get(channel) !== entry) return;
    this.channels.delete(channel);
    // Sent after the SUBSCRIBE on the same connection, so the order holds; a new waiter's
    // SUBSCRIBE queued behind it re-subscribes.
    (this.sharded ? this.subscriber?.sunsubscribe(channel) : this.subscriber?.unsubscribe(channel))?.catch(() => undefined);
  }

  private connection(): Redis | Cluster {
    if (this.subscriber) return this.subscriber;
    const subscriber = this.connect(this.sharded);
    subscriber.on(this.sharded ? 'smessage' : 'message', (channel: string, message: string) => {
      const entry = this.channels.get(channel);
      if (entry) [...entry.waiters].forEach((wake) => wake(message));
    });
    // Without a listener ioredis reports every reconnect failure as an unhandled error event.
    subscriber.on('error', (error: unknown) => this.logger.debug(`subscriber: ${errorMessage(error)}`));
    this.subscriber = subscriber;
    return subscriber;
  }
}
