// A tiny element builder. Text always goes in as text nodes, never as HTML, so a
// webhook URL or a payload can never inject markup into the page.

// Combining marks kept on one letter: more than any script stacks (Tibetan, Hebrew's
// points and accents). Hundreds on one letter ("Z" and 149 of them is a name the
// database takes) are one character that no line may break, as wide as the marks
// drawn side by side or as tall as them stacked: it drew over the columns beside it
// and the rows above it, and pushed every row's buttons off the page.
const MARKS_SHOWN = 8;
const MARK_RUN = new RegExp(`(\\p{M}{${MARKS_SHOWN}})\\p{M}+`, 'gu');

/** Text as the page shows it: a letter's combining marks past MARKS_SHOWN left out. */
export function shown(text) {
  return String(text).replace(MARK_RUN, '$1');
}

/** Sets an element's text (shown), as text. */
export function setText(element, text) {
  element.textContent = shown(text);
}

/**
 * h('td', { class: 'num', onclick: fn }, 'text', childNode, [more, children])
 * Attributes starting with "on" become listeners; false/null/undefined are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : shown(child));
  }
}

/** Replaces all children of an element. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}
