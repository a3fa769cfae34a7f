/**
 * Generated blocks of README.md: what lies between `<!-- NAME:begin -->` and `<!-- NAME:end -->`
 * is written by a script (the performance table: readme-table.ts; the task pictures:
 * readme-pictures.ts), so the page never disagrees with what produced it.
 */

export const markersOf = (name: string) => ({ begin: `<!-- ${name}:begin -->`, end: `<!-- ${name}:end -->` });

/** Where the block's content is; throws naming what is wrong. */
function bounds(readme: string, name: string): { start: number; end: number } {
  const m = markersOf(name);
  const begin = readme.indexOf(m.begin);
  const end = readme.indexOf(m.end);
  if (begin < 0 || end < 0) throw new Error(`README.md has no ${begin < 0 ? m.begin : m.end} marker for the ${name} block`);
  if (readme.indexOf(m.begin, begin + 1) >= 0 || readme.indexOf(m.end, end + 1) >= 0) throw new Error(`README.md has more than one ${name} block`);
  if (end < begin) throw new Error(`README.md has ${m.end} before ${m.begin}`);
  return { start: begin + m.begin.length, end };
}

/** What lies between the markers (without the newline after the begin marker). */
export function extractBlock(readme: string, name: string): string {
  const { start, end } = bounds(readme, name);
  return readme.slice(start, end).replace(/^\n/, '');
}

/** The README with the block's content replaced. */
export function replaceBlock(readme: string, name: string, content: string): string {
  const { start, end } = bounds(readme, name);
  return `${readme.slice(0, start)}\n${content}${readme.slice(end)}`;
}
