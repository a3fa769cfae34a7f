/** Server-sent events read from a fetch body, for the streamed chat completion. */

/**
 * The `data:` payloads of each event, as the events complete. Lines may arrive split across
 * chunks, so only whole lines are parsed; a multi-line event's data lines are joined with '\n'
 * (the SSE spec). Comments (':'), `event:` and `id:` lines are ignored.
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  // `stream: true` keeps a UTF-8 character split between chunks for the next one.
  const decoder = new TextDecoder();
  let pending = '';
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    pending += done ? `${decoder.decode()}\n\n` : decoder.decode(value, { stream: true });
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const raw of lines) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '') {
        if (data.length > 0) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      }
    }
    if (done) return;
  }
}
