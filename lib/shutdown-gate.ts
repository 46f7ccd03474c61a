/**
 * Shutdown, as every part of the service sees it: no new locks once `closing`, and waits on
 * the store end when `signal` aborts.
 */
export class ShutdownGate {
  private readonly controller = new AbortController();
  closing = false;

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** `false` when shutdown had already begun. */
  begin(): boolean {
    if (this.closing) return false;
    this.closing = true;
    this.controller.abort();
    return true;
  }
}
