/** A barrier a holder (or a handler) waits at until the test opens it. */
export class Gate {
  private opened!: () => void;
  readonly open = new Promise<void>((resolve) => (this.opened = resolve));
  release(): void {
    this.opened();
  }
}
