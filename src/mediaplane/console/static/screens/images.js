// Images server demo (Authgear-compatible): signed upload URL → multipart POST → the 240×240
// `profile` rendition, public at /_images/APP/OBJECT/profile.

import { images } from '../api.js';
import { filePicker, h, statusLine } from '../dom.js';
import { describe } from '../reasons.js';
import { postMultipart, progressMeter } from '../transfer.js';

export const title = 'Images';
export const needs = { audiences: ['media'] };

const SCHEME = 'authgearimages:///';

export function create() {
  const status = statusLine({ id: 'images-status' });
  const bar = progressMeter('Avatar upload');
  bar.hidden = true;
  const steps = h('ol', { class: 'flow', id: 'images-flow' });
  const profile = h('img', { id: 'images-profile', class: 'avatar', alt: 'Your avatar, the profile rendition', width: 240, height: 240, hidden: true });
  const links = h('p', { class: 'hint' });
  const picker = filePicker({ id: 'avatar-file', label: 'Choose an avatar', onFiles: ([file]) => upload(file) });

  const step = (label, value) => steps.append(h('li', {}, label, ' ', h('code', { class: 'wrap' }, value)));

  async function upload(file) {
    steps.replaceChildren();
    links.replaceChildren();
    profile.hidden = true;
    bar.hidden = false;
    bar.value = 0;
    try {
      status.set('Asking for a signed upload URL…');
      const { result: signed } = await images.userUploadUrl();
      step('POST /api/images/upload →', `${signed.upload_url.slice(0, 72)}…`);
      status.set('Uploading…');
      const { result } = await postMultipart(signed.upload_url, file, (sent, total) => { bar.value = sent / total; });
      step('POST (multipart, one part named file) →', result.upload_url);
      const [appId, objectId] = result.upload_url.slice(SCHEME.length).split('/');
      const base = `/_images/${encodeURIComponent(appId)}/${encodeURIComponent(objectId)}`;
      step('GET (public) →', `${base}/profile`);
      profile.src = `${base}/profile`;
      profile.hidden = false;
      links.replaceChildren(h('a', { href: `${base}/original`, target: '_blank', rel: 'noopener' }, 'Original'),
        ' · ', h('a', { href: `${base}/profile`, target: '_blank', rel: 'noopener' }, 'Profile (240×240)'));
      status.set('Stored; the profile rendition is made once, then served from storage.', 'ok');
    } catch (error) {
      status.set(`Upload failed: ${describe(error)}`, 'error');
    } finally {
      bar.hidden = true;
    }
  }

  const root = h('section', { class: 'screen', 'aria-labelledby': 'images-title' },
    h('h1', { id: 'images-title', tabindex: '-1' }, 'Images server'),
    h('p', { class: 'lead' }, 'The Authgear-compatible avatar flow: a signed upload URL for the signed-in user, a multipart POST to it, and the public 240×240 profile rendition.'),
    h('div', { class: 'card' }, picker.el, bar, status.el, steps,
      h('figure', { class: 'avatar-figure' }, profile, h('figcaption', {}, links))));
  return { root };
}
