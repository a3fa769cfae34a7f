/**
 * The server's Prometheus metrics, on a registry of its own (two apps in one process, as in the
 * tests, count apart): completions by status, tokens, latencies, and the queue's depth read from
 * the backend when scraped.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Backend } from './backend.js';

/** Seconds, from a tiny model's tenth of a second to a long answer's minutes. */
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'status'>;
  private readonly promptTokens: Counter;
  private readonly completionTokens: Counter;
  private readonly duration: Histogram<'stream'>;
  private readonly firstToken: Histogram;

  constructor(backend: Backend) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'visionllm_' });
    this.requests = new Counter({ name: 'visionllm_requests_total', help: 'Chat completion requests, by HTTP status (499: the client went away)', labelNames: ['status'], registers });
    this.promptTokens = new Counter({ name: 'visionllm_prompt_tokens_total', help: 'Prompt tokens of answered requests (image positions included)', registers });
    this.completionTokens = new Counter({ name: 'visionllm_completion_tokens_total', help: 'Tokens generated for answered requests', registers });
    this.duration = new Histogram({ name: 'visionllm_request_duration_seconds', help: 'Chat completion time, queue included', labelNames: ['stream'], buckets: LATENCY_BUCKETS, registers });
    this.firstToken = new Histogram({ name: 'visionllm_time_to_first_token_seconds', help: 'Streamed requests: time to the first piece of text, queue included', buckets: LATENCY_BUCKETS, registers });
    new Gauge({
      name: 'visionllm_queue_depth',
      help: 'Requests waiting or running',
      registers,
      async collect() {
        this.set(await backend.depth());
      },
    });
  }

  /** A chat completion ended (answered, refused or abandoned). */
  request(status: number, stream: boolean, seconds: number): void {
    this.requests.inc({ status: String(status) });
    this.duration.observe({ stream: String(stream) }, seconds);
  }

  tokens(prompt: number, completion: number): void {
    this.promptTokens.inc(prompt);
    this.completionTokens.inc(completion);
  }

  firstText(seconds: number): void {
    this.firstToken.observe(seconds);
  }
}
