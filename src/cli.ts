#!/usr/bin/env node
/**
 * visionllm <command> [options]
 *   chat   answer a prompt about an image, streaming the answer (default command)
 *   info   the WebGPU adapter, its limits and kernel profile, and a check of the core kernels
 * Exit status: 0 done, 1 failed, 2 a usage error (reported before anything loads).
 */
import { chat } from './cli/chat.js';
import { info } from './cli/info.js';
import { parseChatArgs, USAGE, UsageError } from './cli/options.js';

/**
 * A reader that stops early (`visionllm chat | head`) closes the pipe, and the next write fails
 * with EPIPE as an 'error' event, which unhandled would crash with a stack trace. It ends the
 * generation instead: the reader has what it wanted.
 */
function watchStdout(): AbortSignal {
  const closed = new AbortController();
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') {
      console.error(`stdout: ${err.message}`);
      process.exitCode = 1;
    }
    closed.abort();
  });
  return closed.signal;
}

async function main(argv: string[]): Promise<void> {
  const stdoutClosed = watchStdout();
  const [command, ...rest] = argv;
  const chatArgs = command === undefined || command.startsWith('-') ? argv : command === 'chat' ? rest : null;
  if (chatArgs) {
    const args = parseChatArgs(chatArgs);
    return args === 'help' ? void console.log(USAGE) : chat(args, stdoutClosed);
  }
  switch (command) {
    case 'info':
      if (rest.length) throw new UsageError(`info takes no arguments, got '${rest[0]}'`, true);
      return info();
    case 'help':
      return void console.log(USAGE);
    default:
      throw new UsageError(`unknown command '${command}'`, true);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(err.showUsage ? `${err.message}\n\n${USAGE}` : err.message);
    process.exitCode = 2;
    return;
  }
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
