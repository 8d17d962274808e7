// The project field shared by the photographer, attendee and operator screens: pick one of
// your projects by name (GET /v1/projects), or type a project id; recent ids are remembered.

import { media } from './api.js';
import { h, uid } from './dom.js';

const KEY = 'mediaplane.console.projects';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function recentProjects() {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? '[]');
  } catch {
    return [];
  }
}

export function rememberProject(id) {
  const list = [id, ...recentProjects().filter((p) => p !== id)].slice(0, 8);
  localStorage.setItem(KEY, JSON.stringify(list));
}

export const isProjectId = (value) => UUID.test(value.trim());

/** A random uuid v4; crypto.randomUUID exists only in secure contexts (not on a LAN IP). */
export function newProjectId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A labelled project id input with recent ids as suggestions, an optional "New project"
 * button, and an action button; `onSubmit(projectId)` runs on a valid id.
 */
export function projectPicker({ name, action, allowNew = false, onSubmit }) {
  const inputId = uid(`${name}-project`);
  const listId = uid(`${name}-recent`);
  const hintId = uid(`${name}-hint`);
  const input = h('input', {
    id: inputId, name: 'projectId', type: 'text', inputmode: 'text', autocomplete: 'off',
    spellcheck: 'false', list: listId, placeholder: 'e.g. 44444444-4444-4444-4444-444444444444',
    'aria-describedby': hintId, required: true,
  });
  const datalist = h('datalist', { id: listId });
  const HINT = 'Choose one of your projects, or enter a project id.';
  const hint = h('p', { class: 'hint', id: hintId }, HINT);

  let names = new Map();
  const refreshSuggestions = () =>
    datalist.replaceChildren(...recentProjects().map((p) =>
      h('option', { value: p, label: names.get(p) ?? '' })));

  // Your projects by name: choosing one opens it. Kept after the id field and its buttons, so
  // the keyboard order of the form stays id → new → open.
  const chooserId = uid(`${name}-projects`);
  const chooser = h('select', { id: chooserId, name: 'projectChoice', hidden: true, onchange: () => {
    if (!chooser.value) return;
    input.value = chooser.value;
    submit();
  } });
  const chooserLabel = h('label', { for: chooserId, hidden: true }, 'Your projects');

  async function loadProjects() {
    let items = [];
    try {
      ({ items } = await media.projects());
    } catch {
      return [];  // a token without access to the list: the id field still works
    }
    names = new Map(items.map((p) => [p.projectId, p.name]));
    const label = (p) => (p.matchCount != null
      ? `${p.name} (${p.matchCount} photo${p.matchCount === 1 ? '' : 's'} of you)` : p.name);
    chooser.replaceChildren(h('option', { value: '' }, items.length ? 'Choose…' : 'none yet'),
      ...items.map((p) => h('option', { value: p.projectId }, label(p))));
    chooser.hidden = chooserLabel.hidden = false;
    refreshSuggestions();
    return items;
  }

  const form = h('form', { class: 'project-picker', novalidate: true },
    h('label', { for: inputId }, 'Project id'),
    h('div', { class: 'row' },
      input,
      allowNew && h('button', { type: 'button', class: 'secondary', onclick: () => {
        input.value = newProjectId();
        submit();
      } }, 'New project'),
      h('button', { type: 'submit' }, action)),
    h('div', { class: 'row' }, chooserLabel, chooser),
    datalist, hint);

  function submit() {
    const value = input.value.trim();
    if (!isProjectId(value)) {
      input.setAttribute('aria-invalid', 'true');
      hint.textContent = 'Enter a project id in uuid form (8-4-4-4-12 hex digits).';
      hint.dataset.tone = 'error';
      input.focus();
      return;
    }
    input.removeAttribute('aria-invalid');
    hint.textContent = HINT;
    delete hint.dataset.tone;
    rememberProject(value);
    refreshSuggestions();
    chooser.value = names.has(value) ? value : '';
    onSubmit(value);
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  refreshSuggestions();

  return {
    form,
    input,
    get value() {
      return isProjectId(input.value) ? input.value.trim() : null;
    },
    loadProjects,
    /** Prefill with the most recent project, else the first of yours (when empty), and open it. */
    async prefill() {
      refreshSuggestions();
      const [last] = recentProjects();
      if (!input.value && last) {
        input.value = last;
        submit();
      }
      const items = await loadProjects();
      if (!input.value && items.length) {
        input.value = items[0].projectId;
        submit();
      }
    },
  };
}
