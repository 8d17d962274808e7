// Tiny DOM helpers: build elements from data, never from HTML strings (API data stays text).

/** `h('button', {class: 'primary', onclick}, 'Save')` → a <button>. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  el.append(...nodes(children));
  return el;
}

function nodes(children) {
  return children.flat(Infinity).filter((c) => c != null && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c))));
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren(...nodes(children));
  return el;
}

let idCounter = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** Say something to screen readers once (status changes, not progress ticks). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (region) region.textContent = text;
}

export function formatBytes(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function shortId(id) {
  return String(id).slice(0, 8);
}

export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : '';
}

/** A status line whose tone (info, ok, error) is styled and exposed as `data-tone`. */
export function statusLine(attrs = {}) {
  const el = h('p', { class: 'status', ...attrs });
  return {
    el,
    set(text, tone = 'info') {
      el.textContent = text;
      el.dataset.tone = tone;
    },
    clear() {
      el.textContent = '';
      delete el.dataset.tone;
    },
  };
}

/**
 * A file input styled as a button: the native input stays (visually hidden, focusable, with its
 * label), so keyboards and screen readers get the real control.
 */
export function filePicker({ id, label, accept = 'image/*', capture, multiple = false, onFiles }) {
  const input = h('input', {
    id, type: 'file', accept, capture, multiple, class: 'visually-hidden',
    onchange: () => {
      const files = [...input.files];
      input.value = '';
      if (files.length) onFiles(files);
    },
  });
  const el = h('span', { class: 'file-picker' }, input, h('label', { for: id, class: 'button' }, label));
  return { el, input };
}
