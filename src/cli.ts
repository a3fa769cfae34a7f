#!/usr/bin/env node
/**
 * visionllm <command> [options]: chat (the default), look, detect, segment, ground, pose, generate, edit,
 * serve, info; `visionllm --help` lists them (src/cli/usage.ts).
 * Exit status: 0 done, 1 failed, 2 a usage error (reported before anything loads).
 */
import { chat } from './cli/chat.js';
import { parseChatArgs } from './cli/chat-options.js';
import { info } from './cli/info.js';
import { look, parseLookArgs } from './cli/look.js';
import { UsageError } from './cli/options.js';
import { parseServeArgs } from './cli/serve-options.js';
import { parseTaskArgs } from './cli/task-options.js';
import { runTask } from './cli/tasks.js';
import { CHAT_USAGE, LOOK_USAGE, SERVE_USAGE, TASK_COMMANDS, taskUsage, USAGE, type TaskCommand } from './cli/usage.js';

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
  // `visionllm --help` lists the commands; any other leading option starts a chat, as before commands existed.
  if (command === '--help' || command === '-h' || command === 'help') return void console.log(USAGE);
  const chatArgs = command === undefined || command.startsWith('-') ? argv : command === 'chat' ? rest : null;
  if (chatArgs) {
    const args = parseChatArgs(chatArgs);
    return args === 'help' ? void console.log(CHAT_USAGE) : chat(args, stdoutClosed);
  }
  if (command === 'look') {
    const args = parseLookArgs(rest);
    return args === 'help' ? void console.log(LOOK_USAGE) : look(args, stdoutClosed);
  }
  if (TASK_COMMANDS.includes(command as TaskCommand)) {
    const args = parseTaskArgs(command as TaskCommand, rest);
    return args === 'help' ? void console.log(taskUsage(command as TaskCommand)) : runTask(args, stdoutClosed);
  }
  if (command === 'serve') {
    const args = parseServeArgs(rest);
    if (args === 'help') return void console.log(SERVE_USAGE);
    // Loaded only for serve: the HTTP server's packages would slow every other command's start.
    const { serve } = await import('./cli/serve.js');
    return serve(args);
  }
  if (command !== 'info') throw new UsageError(`unknown command '${command}'`, USAGE);
  if (rest.length) throw new UsageError(`info takes no arguments, got '${rest[0]}'`, USAGE);
  return info();
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(err.usage ? `${err.message}\n\n${err.usage}` : err.message);
    process.exitCode = 2;
    return;
  }
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
