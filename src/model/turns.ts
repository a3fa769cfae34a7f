/**
 * Calls that take turns: each runs alone, in the order it arrived. A model has one KV cache, so
 * its chats must not interleave; queueing keeps every answer exactly what it would be alone.
 *
 * Written here rather than taken from a queue library because of what closing must do: reject
 * every waiting call with our error and say when the running one has settled (p-queue's clear()
 * drops waiting tasks without settling their promises).
 */
export class Turns {
  private readonly waiting: { start(): void; refuse(err: Error): void }[] = [];
  private busy = false;
  private closedBy: Error | null = null;
  private readonly onIdle: (() => void)[] = [];

  /** Calls waiting for their turn (the running one not included). */
  get queued(): number {
    return this.waiting.length;
  }

  get running(): boolean {
    return this.busy;
  }

  /**
   * Runs `task` once the calls before it have settled. A `signal` that aborts while the call waits
   * takes it out of the queue: it rejects with the signal's reason and never runs.
   */
  run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.closedBy) return Promise.reject(this.closedBy);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const entry = {
        start: () => {
          signal?.removeEventListener('abort', onAbort);
          this.busy = true;
          Promise.resolve()
            .then(task)
            .then(resolve, reject)
            .finally(() => {
              this.busy = false;
              this.next();
            });
        },
        refuse: (err: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(entry);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
      this.next();
    });
  }

  /** Refuses every later and waiting call with `error`; resolves once the running call has settled. */
  close(error: Error): Promise<void> {
    this.closedBy ??= error;
    for (const entry of this.waiting.splice(0)) entry.refuse(error);
    return this.busy ? new Promise((resolve) => this.onIdle.push(resolve)) : Promise.resolve();
  }

  private next(): void {
    if (this.busy) return;
    const entry = this.waiting.shift();
    if (entry) entry.start();
    else for (const resolve of this.onIdle.splice(0)) resolve();
  }
}
