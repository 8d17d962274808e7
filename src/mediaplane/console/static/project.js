// The project id field shared by the photographer, attendee and operator screens: projects are
// plain uuids in the API (no project resource), so the console remembers recent ones locally.

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
  const hint = h('p', { class: 'hint', id: hintId }, 'A project is any uuid; recent ones are suggested.');

  const refreshSuggestions = () =>
    datalist.replaceChildren(...recentProjects().map((p) => h('option', { value: p })));

  const form = h('form', { class: 'project-picker', novalidate: true },
    h('label', { for: inputId }, 'Project id'),
    h('div', { class: 'row' },
      input,
      allowNew && h('button', { type: 'button', class: 'secondary', onclick: () => {
        input.value = newProjectId();
        submit();
      } }, 'New project'),
      h('button', { type: 'submit' }, action)),
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
    hint.textContent = 'A project is any uuid; recent ones are suggested.';
    delete hint.dataset.tone;
    rememberProject(value);
    refreshSuggestions();
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
    /** Prefill with the most recent project (when empty) and submit it. */
    prefill() {
      refreshSuggestions();
      const [last] = recentProjects();
      if (!input.value && last) {
        input.value = last;
        submit();
      }
    },
  };
}
