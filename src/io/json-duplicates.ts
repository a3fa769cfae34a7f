/**
 * JSON.parse keeps the last of two equal keys without a word, so a safetensors header or a shard
 * index naming one tensor twice would silently lose one. This scanner finds the first repeated key
 * (with its path) in text that JSON.parse has already accepted.
 */
export function findDuplicateKey(text: string): string[] | null {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const string = (): string => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string[]): string[] | null => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      for (;;) {
        ws();
        if (text[i] === '}') {
          i++;
          return null;
        }
        const key = string();
        if (seen.has(key)) return [...path, key];
        seen.add(key);
        ws();
        i++; // ':'
        const found = value([...path, key]);
        if (found) return found;
        ws();
        if (text[i] === ',') i++;
      }
    }
    if (c === '[') {
      i++;
      for (let n = 0; ; n++) {
        ws();
        if (text[i] === ']') {
          i++;
          return null;
        }
        const found = value([...path, String(n)]);
        if (found) return found;
        ws();
        if (text[i] === ',') i++;
      }
    }
    if (c === '"') {
      string();
      return null;
    }
    while (i < text.length && !',]} \t\n\r'.includes(text[i]!)) i++; // number, true, false, null
    return null;
  };
  return value([]);
}
