import type { Writable } from 'node:stream';

/**
 * Writes Server-Sent Events to a response with backpressure: when the client's socket is full,
 * `send` waits for it to drain (or for the stream to end), so a client that reads slowly holds up
 * only its own stream, and the server never buffers more than one event beyond the socket's own.
 */
export class EventStreamWriter {
  lastWrite = Date.now();

  constructor(
    private readonly out: Writable,
    private readonly stop: AbortSignal,
  ) {}

  send(event: string, data: unknown, id?: bigint): Promise<void> {
    return this.write(
      `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
    );
  }

  /** A comment line (keep-alive). */
  comment(text: string): Promise<void> {
    return this.write(`: ${text}\n\n`);
  }

  private async write(chunk: string): Promise<void> {
    this.lastWrite = Date.now();
    // A closed socket never drains: nothing to wait for.
    if (this.out.destroyed || this.out.writableEnded) return;
    if (this.out.write(chunk) || this.stop.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.out.off('drain', done);
        this.out.off('close', done);
        this.stop.removeEventListener('abort', done);
        resolve();
      };
      this.out.once('drain', done);
      this.out.once('close', done);
      this.stop.addEventListener('abort', done, { once: true });
    });
  }
}
