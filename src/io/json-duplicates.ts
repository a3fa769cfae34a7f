/**
 * JSON.parse keeps the last of two equal keys without a word, so a safetensors header or a shard
 * index naming one tensor twice would silently lose one. This scanner finds the first repeated key
 * (with its path) in text that JSON.parse has already accepted.
 *
 * It walks the text in one pass with its own stack of open objects and arrays, not by recursion:
 * a corrupt header nesting arrays a million deep must not overflow the call stack.
 */
interface Container {
  /** Keys seen so far (objects), or null (arrays). */
  keys: Set<string> | null;
  /** Whether `path` holds an entry (a key or an index) for this container. */
  named: boolean;
}

export function findDuplicateKey(text: string): string[] | null {
  const path: string[] = [];
  const open: Container[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const top = open.at(-1);
    if (c === '{' || c === '[') {
      open.push({ keys: c === '{' ? new Set() : null, named: c === '[' });
      if (c === '[') path.push('0');
      expectKey = c === '{';
    } else if (c === '}' || c === ']') {
      if (open.pop()?.named) path.pop();
    } else if (c === ',') {
      if (top?.keys) expectKey = true;
      else if (top) path[path.length - 1] = String(Number(path.at(-1)) + 1);
    } else if (c === '"') {
      const start = i++;
      while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      if (!expectKey || !top?.keys) continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (top.named) path.pop();
      if (top.keys.has(key)) return [...path, key];
      top.keys.add(key);
      path.push(key);
      top.named = true;
      expectKey = false;
    }
  }
  return null;
}
