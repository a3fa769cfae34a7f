/** POST /v1/chat/completions with `stream: true`, read back as the text pieces and the decoder results. */
import type { DecoderResult } from './results.js';
import { sseData } from './sse.js';

export type ContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };

export interface ChatMessage {
  role: 'user' | 'assistant';
  content: string | ContentPart[];
}

export interface Answer {
  text: string;
  results: DecoderResult[];
}

/** The server said no; `status` 401 means it wants an API key (or a different one). */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface StreamChunk {
  choices?: { delta?: { content?: string; visionllm?: { results?: DecoderResult[] } } }[];
  error?: { message?: string };
}

export async function streamChat(messages: ChatMessage[], apiKey: string, onText: (piece: string) => void): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream' };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const response = await fetch('/v1/chat/completions', { method: 'POST', headers, body: JSON.stringify({ messages, stream: true }) });
  if (!response.ok || !response.body) throw new HttpError(response.status, await errorMessage(response));

  const answer: Answer = { text: '', results: [] };
  for await (const data of sseData(response.body)) {
    if (data === '[DONE]') break;
    const chunk = JSON.parse(data) as StreamChunk;
    // An error after the headers went out can only arrive inside the stream.
    if (chunk.error) throw new Error(chunk.error.message ?? 'the server stopped the answer');
    const delta = chunk.choices?.[0]?.delta;
    if (delta?.content) {
      answer.text += delta.content;
      onText(delta.content);
    }
    if (delta?.visionllm?.results) answer.results = delta.visionllm.results;
  }
  return answer;
}

/** OpenAI's `{ error: { message } }` when the body is that, else the body or the status line. */
async function errorMessage(response: Response): Promise<string> {
  const body = await response.text();
  try {
    const message = (JSON.parse(body) as StreamChunk).error?.message;
    if (message) return message;
  } catch {
    // not JSON: the body itself says it, if anything does
  }
  return body.trim() || `${response.status} ${response.statusText}`;
}
