/**
 * The page's wiring: a picture (chosen or dropped), a conversation about it streamed from
 * /v1/chat/completions, and each answer's decoder results drawn over the picture. The API key
 * field stays hidden until the server answers 401.
 */
import { HttpError, streamChat, type ChatMessage, type ContentPart } from './chat-client.js';
import { watchImageInput, type Picture } from './image-input.js';
import { drawPicture } from './overlay.js';
import { imagesOf, type DecoderResult } from './results.js';
import { describeResults } from './summary.js';

const byId = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const ui = {
  status: byId<HTMLParagraphElement>('status'),
  picturePane: byId<HTMLElement>('picture-pane'),
  imageInput: byId<HTMLInputElement>('image-input'),
  canvas: byId<HTMLCanvasElement>('picture'),
  resultList: byId<HTMLUListElement>('result-list'),
  messages: byId<HTMLOListElement>('messages'),
  composer: byId<HTMLFormElement>('composer'),
  apiKeyRow: byId<HTMLParagraphElement>('api-key-row'),
  apiKey: byId<HTMLInputElement>('api-key'),
  prompt: byId<HTMLTextAreaElement>('prompt'),
  send: byId<HTMLButtonElement>('send'),
  newChat: byId<HTMLButtonElement>('new-chat'),
};

/** The turns so far, sent whole with each request; the picture rides on the first user message. */
let history: ChatMessage[] = [];
let picture: Picture | null = null;

watchImageInput(
  ui.imageInput,
  ui.picturePane,
  (chosen) => {
    picture = chosen;
    // The server reads the picture from the conversation's first message: a new one starts a new chat.
    startNewChat();
    showResults([]);
    setStatus(`${chosen.name}, ${chosen.image.naturalWidth}×${chosen.image.naturalHeight}: ask about it.`);
  },
  setStatus,
);
ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.newChat.addEventListener('click', () => {
  startNewChat();
  showResults([]);
});
setStatus('Choose an image (or drop one), then ask about it.');

async function send(): Promise<void> {
  const text = ui.prompt.value.trim();
  if (!text || ui.send.disabled) return;
  const content: string | ContentPart[] = history.length === 0 && picture ? [{ type: 'text', text }, { type: 'image_url', image_url: { url: picture.dataUrl } }] : text;
  const conversation: ChatMessage[] = [...history, { role: 'user', content }];
  const question = addMessage('user', text);
  const answer = addMessage('assistant', '');
  const answerText = answer.querySelector('.text')!;
  answer.setAttribute('aria-busy', 'true');
  ui.send.disabled = true;
  ui.prompt.value = '';
  setStatus('Thinking…');
  try {
    const { text: reply, results } = await streamChat(conversation, ui.apiKey.value.trim(), (piece) => answerText.append(piece));
    history = [...conversation, { role: 'assistant', content: reply }];
    showMadeImages(answer, results);
    showResults(results);
    setStatus('');
  } catch (error) {
    // The turn did not happen: its question goes back to the box, to send again.
    ui.prompt.value = text;
    if (error instanceof HttpError && error.status === 401) {
      question.remove();
      answer.remove();
      askForApiKey(error.message);
    } else {
      answer.classList.add('error');
      answerText.textContent = `Error: ${error instanceof Error ? error.message : String(error)}`;
      setStatus('The request failed; your message is back in the box.');
    }
  } finally {
    answer.setAttribute('aria-busy', 'false');
    ui.send.disabled = false;
  }
}

function askForApiKey(reason: string): void {
  const hadKey = !ui.apiKeyRow.hidden && ui.apiKey.value.trim() !== '';
  ui.apiKeyRow.hidden = false;
  ui.apiKey.focus();
  setStatus(hadKey ? `The server refused this API key (${reason}).` : 'This server needs an API key: enter it and send again.');
}

function startNewChat(): void {
  history = [];
  ui.messages.replaceChildren();
}

function addMessage(role: ChatMessage['role'], text: string): HTMLLIElement {
  const item = document.createElement('li');
  item.className = `message ${role}`;
  const who = document.createElement('span');
  who.className = 'role';
  who.textContent = role === 'user' ? 'You' : 'VisionLLM';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  item.append(who, body);
  ui.messages.append(item);
  return item;
}

/** Generated (sd) and edited (ip2p) pictures go in the answer that made them. */
function showMadeImages(answer: HTMLLIElement, results: readonly DecoderResult[]): void {
  for (const result of results) {
    imagesOf(result).forEach((made, i) => {
      const img = document.createElement('img');
      img.src = `data:image/png;base64,${made.png}`;
      img.alt = `${result.decoder === 'ip2p' ? 'Edited' : 'Generated'} image ${i + 1}, ${made.width}×${made.height}`;
      answer.append(img);
    });
  }
}

/** The picture with these results over it, and the same results in words. */
function showResults(results: readonly DecoderResult[]): void {
  const lines = describeResults(results);
  ui.resultList.replaceChildren(...lines.map((line) => Object.assign(document.createElement('li'), { textContent: line })));
  if (!picture) return;
  drawPicture(ui.canvas, picture.image, results);
  ui.canvas.hidden = false;
  ui.canvas.setAttribute('aria-label', lines.length > 0 ? `${picture.name} with ${lines.join('; ')}` : picture.name);
}

function setStatus(message: string): void {
  ui.status.textContent = message;
}
