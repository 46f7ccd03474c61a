import { BoundedCall, CallDeadlines, type BoundedCallKind, type WatchedCall } from '../../lib/call-deadlines';
import { errorMessage } from '../../lib/lock.errors';

const watching = (onExpire: () => void): WatchedCall => ({ done: false, deadline: 0, expire: onExpire });

describe('CallDeadlines', () => {
  it('expires exactly the calls that did not settle in time, with one timer, and reports idle', async () => {
    const deadlines = new CallDeadlines(40);
    const expired: number[] = [];
    const calls = [0, 1, 2, 3].map((index) => deadlines.watch(watching(() => expired.push(index))));
    deadlines.settle(calls[0]);
    deadlines.settle(calls[2]);
    let idle = false;
    const whenIdle = deadlines.idle().then(() => (idle = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(idle).toBe(false);
    await whenIdle;
    expect(expired).toEqual([1, 3]);
    expect(calls.every((call) => call.done)).toBe(true);
    // A later call still gets its own full timeout after the queue drained.
    const late = deadlines.watch(watching(() => expired.push(4)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(expired).toEqual([1, 3]);
    await deadlines.idle();
    expect(expired).toEqual([1, 3, 4]);
    expect(late.done).toBe(true);
  });
});

describe('BoundedCall', () => {
  /** A kind that records what happened to its calls; `answered` doubles the answer, or throws on a negative one. */
  function recordingKind(): { kind: BoundedCallKind<number, number, string>; events: string[] } {
    const events: string[] = [];
    const kind: BoundedCallKind<number, number, string> = {
      answered: (value, call) => {
        if (value < 0) throw new Error(`bad answer ${value}`);
        events.push(`answered ${call.subject} ${value}`);
        return value * 2;
      },
      failed: (call, error, timedOut) => {
        events.push(`failed ${call.subject} ${timedOut ? 'timeout' : errorMessage(error)}`);
        return new Error(`${call.operation} failed`);
      },
      answeredLate: (value, call) => events.push(`late ${call.subject} ${value}`),
    };
    return { kind, events };
  }

  it('maps an answer, and turns a failure or a throw in `answered` into the kind\'s error', async () => {
    const { kind, events } = recordingKind();
    const deadlines = new CallDeadlines(1_000);
    await expect(new BoundedCall(kind, 'op', 'a').follow(Promise.resolve(21), deadlines)).resolves.toBe(42);
    await expect(new BoundedCall(kind, 'op', 'b').follow(Promise.reject(new Error('down')), deadlines)).rejects.toThrow('op failed');
    await expect(new BoundedCall(kind, 'op', 'c').follow(Promise.resolve(-1), deadlines)).rejects.toThrow('op failed');
    expect(events).toEqual(['answered a 21', 'failed b down', 'failed c bad answer -1']);
    await deadlines.idle();
  });

  it('at its deadline rejects once; a later answer goes to answeredLate once, a later failure nowhere', async () => {
    const { kind, events } = recordingKind();
    const deadlines = new CallDeadlines(30);
    let answer!: (value: number) => void;
    let fail!: (error: Error) => void;
    const late = new BoundedCall(kind, 'op', 'late').follow(new Promise<number>((resolve) => (answer = resolve)), deadlines);
    const failing = new BoundedCall(kind, 'op', 'failing').follow(new Promise<number>((_, reject) => (fail = reject)), deadlines);
    await expect(late).rejects.toThrow('op failed');
    await expect(failing).rejects.toThrow('op failed');
    answer(5);
    fail(new Error('too late'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(events).toEqual(['failed late timeout', 'failed failing timeout', 'late late 5']);
  });

  it('without deadlines (a store in this process) nothing expires', async () => {
    const { kind, events } = recordingKind();
    let answer!: (value: number) => void;
    const call = new BoundedCall(kind, 'op', 'slow').follow(new Promise<number>((resolve) => (answer = resolve)), null);
    await new Promise((resolve) => setTimeout(resolve, 50));
    answer(1);
    await expect(call).resolves.toBe(2);
    expect(events).toEqual(['answered slow 1']);
  });
});
