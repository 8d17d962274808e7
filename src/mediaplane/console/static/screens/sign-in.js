// Sign in: a dev identity (only while the service signs tokens with its dev key), or a bearer
// token pasted from the identity provider.

import { h, statusLine, uid } from '../dom.js';
import { describe } from '../reasons.js';

export const title = 'Sign in';

export const DEV_ROLES = [
  ['user', 'Attendee', 'role user · audience media — consent, selfie, photos of me, the Images demo'],
  ['photographer', 'Photographer', 'role photographer · audience media — a project’s photos'],
  ['operator', 'Operator', 'role operator · audience backoffice — profile picture, project overview'],
];

function devPanel({ signInAs, status }) {
  const subjectId = uid('dev-subject');
  const subject = h('input', { id: subjectId, type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'default dev identity' });
  const choose = async (role) => {
    try {
      await signInAs(role, subject.value.trim() || undefined);
    } catch (error) {
      status.set(describe(error), 'error');
    }
  };
  return h('div', { class: 'card', role: 'region', 'aria-labelledby': 'dev-title' },
    h('h2', { id: 'dev-title' }, 'Pick a dev identity'),
    h('p', {}, 'No identity provider is configured, so this service signs tokens with its own dev key and can sign you in as anyone. (This is off as soon as a JWT key is configured.)'),
    h('ul', { class: 'identities' }, DEV_ROLES.map(([role, label, text]) =>
      h('li', {}, h('button', { type: 'button', class: 'identity-choice', dataset: { role }, onclick: () => choose(role) },
        h('strong', {}, label), h('span', {}, text))))),
    h('details', {},
      h('summary', {}, 'Another subject'),
      h('label', { for: subjectId }, 'Subject (the token’s sub)'), subject,
      h('p', { class: 'hint' }, 'Two attendees need two subjects; empty means the default one of each role.')));
}

function tokenPanel({ signInWith, status, devSignIn }) {
  const tokenId = uid('token');
  const token = h('textarea', { id: tokenId, name: 'token', rows: 4, spellcheck: 'false', autocomplete: 'off', required: true });
  const form = h('form', { class: 'card', 'aria-labelledby': 'token-title' },
    h('h2', { id: 'token-title' }, devSignIn ? '…or paste a bearer token' : 'Paste a bearer token'),
    h('p', {}, 'A JWT from your identity provider: audience media (attendees, photographers) or backoffice (operators, photographers), with its roles. It stays in this tab only.'),
    h('label', { for: tokenId }, 'Bearer token'), token,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Sign in')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    try {
      signInWith(token.value.trim());
    } catch (error) {
      status.set(error.message, 'error');
      token.focus();
    }
  });
  return form;
}

export function create({ config, signInAs, signInWith }) {
  const status = statusLine({ id: 'sign-in-status', role: 'alert' });
  const root = h('section', { class: 'screen', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title', tabindex: '-1' }, 'Sign in'),
    h('p', { class: 'lead' }, 'Mediaplane takes photo uploads straight into storage, makes thumbnails, watermarked previews and avatars, and finds people in event photos by their selfie — with consent. This console drives it through its public API.'),
    status.el,
    config.devSignIn && devPanel({ signInAs, status }),
    tokenPanel({ signInWith, status, devSignIn: config.devSignIn }));
  return { root };
}
