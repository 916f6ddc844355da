/**
 * A small push/pull buffer behind every adapter's `Subscription`: the broker callback pushes, the consumer's
 * `for await` pulls. Pulling waits on a promise (no polling); `end()` finishes the iteration.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiter: ((result: IteratorResult<T>) => void) | undefined;
  private failWaiter: ((err: unknown) => void) | undefined;
  private ended = false;
  private error: unknown;

  push(item: T): void {
    if (this.ended) return;
    const waiter = this.waiter;
    if (waiter) {
      this.clearWaiter();
      waiter({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  /** Finish the iteration; buffered items not yet pulled are handed back. */
  end(): T[] {
    this.ended = true;
    const rest = this.items.splice(0);
    const waiter = this.waiter;
    this.clearWaiter();
    waiter?.({ value: undefined, done: true });
    return rest;
  }

  /** Finish the iteration with an error thrown into the consumer's loop. */
  fail(err: unknown): T[] {
    this.error = err;
    const failWaiter = this.failWaiter;
    // A consumer waiting right now must get the error, not a quiet end of iteration.
    this.clearWaiter();
    const rest = this.end();
    failWaiter?.(err);
    return rest;
  }

  get buffered(): number {
    return this.items.length;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.error !== undefined) return Promise.reject(this.error);
        const item = this.items.shift();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise<IteratorResult<T>>((resolve, reject) => {
          this.waiter = resolve;
          this.failWaiter = reject;
        });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  private clearWaiter(): void {
    this.waiter = undefined;
    this.failWaiter = undefined;
  }
}
