// A tiny element builder. Text always goes in as text nodes, never as HTML, so a
// webhook URL or a payload can never inject markup into the page.

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
    else element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces all children of an element. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}
