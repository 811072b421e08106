import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EventStreamWriter } from './event-stream.js';

/** A client that reads a chunk every few milliseconds through a small socket buffer. */
function slowClient(highWaterMark: number) {
  const received: string[] = [];
  let most = 0;
  const out = new Writable({
    highWaterMark,
    write(chunk, _enc, done) {
      received.push(String(chunk));
      setTimeout(done, 2);
    },
  });
  const watch = () => {
    most = Math.max(most, out.writableLength);
  };
  return { out, received, watch, most: () => most };
}

describe('event streams', () => {
  it('wait for a slow client to drain: what is buffered stays near the socket buffer, whatever is replayed', async () => {
    const client = slowClient(1024);
    const writer = new EventStreamWriter(client.out, new AbortController().signal);
    const event = { points: Array.from({ length: 20 }, (_, i) => ({ name: 'loss', step: i, value: 0.5 })) };
    const size = `event: metrics\ndata: ${JSON.stringify(event)}\n\n`.length;
    for (let i = 0; i < 200; i++) {
      await writer.send('metrics', event);
      client.watch();
    }
    // Without waiting for drain, all 200 events (some 200 × size bytes) would sit in memory at once.
    expect(client.most()).toBeLessThanOrEqual(1024 + size);
    await new Promise<void>((r) => client.out.end(r));
    expect(client.received.join('').split('event: metrics').length - 1).toBe(200);
  });

  it('stop waiting as soon as the stream is ended, for a client that never reads', async () => {
    const stuck = new Writable({ highWaterMark: 16, write() {} }); // never calls back
    const stop = new AbortController();
    const writer = new EventStreamWriter(stuck, stop.signal);
    // The first event fills the buffer: it waits for a drain that never comes, and so would the stream.
    const first = writer.send('status', { status: 'running' });
    let settled = false;
    void first.then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    stop.abort('revoked');
    await expect(first).resolves.toBeUndefined();
    await expect(writer.send('status', { status: 'running' })).resolves.toBeUndefined();
  });
});
