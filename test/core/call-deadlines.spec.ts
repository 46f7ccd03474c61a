import { CallDeadlines } from '../../lib/call-deadlines';

describe('CallDeadlines', () => {
  it('expires exactly the calls that did not settle in time, with one timer, and reports idle', async () => {
    const deadlines = new CallDeadlines(40);
    const expired: number[] = [];
    const calls = [0, 1, 2, 3].map((index) => deadlines.watch(() => expired.push(index)));
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
    const late = deadlines.watch(() => expired.push(4));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(expired).toEqual([1, 3]);
    await deadlines.idle();
    expect(expired).toEqual([1, 3, 4]);
    expect(late.done).toBe(true);
  });
});
