// The docs' text as tests read it: a page's section, to hold what it says to what the
// product does.
import { readFileSync } from 'node:fs';

const root = new URL('../../', import.meta.url);

/**
 * A markdown file's section: from its heading to the next heading of its level or
 * above (a `# ` line inside a code block is a shell comment, not a heading).
 */
export function section(path: string, heading: string): string {
  const lines = readFileSync(new URL(path, root), 'utf8').split('\n');
  const level = /^#+/.exec(heading)![0].length;
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`${path} has no section "${heading}"`);
  let inCode = false;
  let end = start + 1;
  for (; end < lines.length; end++) {
    if (lines[end]!.startsWith('```')) inCode = !inCode;
    const hashes = /^(#+) /.exec(lines[end]!)?.[1];
    if (!inCode && hashes && hashes.length <= level) break;
  }
  return lines.slice(start + 1, end).join('\n');
}
