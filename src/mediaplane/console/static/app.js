// The console's shell: hash routes to screens, the signed-in identity, and guards that say
// which token a screen needs. Screens are built once per session and kept (hidden) when you
// leave them, so uploads and polling carry on in the background.

import { consoleApi } from './api.js';
import { h } from './dom.js';
import { describe } from './reasons.js';
import * as attendee from './screens/attendee.js';
import * as imagesScreen from './screens/images.js';
import * as operator from './screens/operator.js';
import * as photographer from './screens/photographer.js';
import * as signInScreen from './screens/sign-in.js';
import { allows, currentSession, homeScreen, signIn, signOut } from './session.js';

const SCREENS = {
  'sign-in': signInScreen,
  photographer,
  attendee,
  operator,
  images: imagesScreen,
};

const main = document.getElementById('main');
const built = new Map();
let config = { devSignIn: false, publicUrl: location.origin };

export function navigate(name) {
  if (location.hash === `#/${name}`) route();
  else location.hash = `#/${name}`;
}

async function signInAs(role, subject) {
  const { token } = await consoleApi.devToken(role, subject);
  navigate(homeScreen(signIn(token, 'dev')));
}

function signInWith(token) {
  navigate(homeScreen(signIn(token, 'pasted')));
}

function needsText({ audiences, roles = [] }) {
  const who = roles.length ? `a ${roles.join(' or ')} token` : 'a token';
  return `${who} of audience ${audiences.join(' or ')}`;
}

/** What a screen shows to someone whose token cannot use it. */
function guard(name, screen, session) {
  const role = screen.needs.roles?.[0] ?? 'user';
  return h('section', { class: 'screen', 'aria-labelledby': `${name}-guard` },
    h('h1', { id: `${name}-guard`, tabindex: '-1' }, screen.title),
    h('div', { class: 'card' },
      h('p', {}, `This screen needs ${needsText(screen.needs)}.`,
        session ? ` You are signed in with roles ${session.roles.join(', ') || 'none'} for ${session.audiences.join(', ')}.` : ' You are not signed in.'),
      h('div', { class: 'row' },
        config.devSignIn && h('button', { type: 'button', onclick: () => signInAs(role).catch((e) => alertIn(e)) },
          `Sign in as ${role} (dev)`),
        h('a', { class: 'button secondary', href: '#/sign-in' }, 'Sign in'))));
}

function alertIn(error) {
  showBanner(describe(error));
}

function screenFor(name) {
  if (built.has(name)) return built.get(name);
  const screen = SCREENS[name];
  const session = currentSession();
  let view;
  if (screen.needs && !allows(session, screen.needs)) {
    view = { root: guard(name, screen, session), transient: true };
  } else {
    view = screen.create({ config, session, signInAs, signInWith, navigate });
  }
  view.root.dataset.screen = name;
  main.append(view.root);
  if (!view.transient) built.set(name, view);
  return view;
}

function route() {
  const hash = location.hash;
  if (hash && !hash.startsWith('#/')) return; // in-page links (skip link): not a route
  const session = currentSession();
  let name = hash.slice(2);
  if (!SCREENS[name]) name = session ? homeScreen(session) : 'sign-in';
  for (const el of main.querySelectorAll('[data-screen]')) {
    if (!built.has(el.dataset.screen)) el.remove();
    else el.hidden = true;
  }
  main.querySelector('.loading')?.remove();
  const view = screenFor(name);
  view.root.hidden = false;
  view.show?.();
  document.title = `${SCREENS[name].title} · Mediaplane console`;
  for (const link of document.querySelectorAll('.topbar a')) {
    if (link.getAttribute('href') === `#/${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  view.root.querySelector('h1')?.focus({ preventScroll: true });
}

function renderIdentity() {
  const session = currentSession();
  const box = document.getElementById('identity');
  if (!session) {
    box.replaceChildren(h('a', { class: 'button small', href: '#/sign-in' }, 'Sign in'));
    return;
  }
  box.replaceChildren(
    h('span', { class: 'who', title: `sub ${session.subject}` },
      h('strong', {}, session.roles.join(', ') || 'no role'),
      h('span', { class: 'sub' }, ` · ${session.subject.slice(0, 8)}`)),
    h('button', { type: 'button', class: 'secondary small', onclick: () => { signOut(); navigate('sign-in'); } }, 'Sign out'));
}

function showBanner(text) {
  const banner = document.getElementById('banner');
  banner.textContent = text;
  banner.hidden = !text;
}

function checkPublicUrl() {
  // Local presigned URLs point at PUBLIC_URL: opened under another origin, uploads would be
  // cross-origin (and refused), so say where the console works.
  const expected = new URL(config.publicUrl, location.href).origin;
  if (expected !== location.origin) {
    const banner = document.getElementById('banner');
    banner.replaceChildren('Uploads go to this service’s PUBLIC_URL, ', h('a', { href: expected }, expected),
      ': open the console there (or set PUBLIC_URL to this address).');
    banner.hidden = false;
  }
}

document.addEventListener('session-changed', () => {
  for (const view of built.values()) view.root.remove();
  built.clear();
  renderIdentity();
});

async function boot() {
  try {
    config = await consoleApi.config();
  } catch (error) {
    showBanner(`The service did not answer: ${describe(error)}`);
  }
  checkPublicUrl();
  renderIdentity();
  window.addEventListener('hashchange', route);
  route();
}

boot();
