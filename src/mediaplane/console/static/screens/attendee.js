// Attendee: consent to biometric processing (and revoke it), a selfie, and the event photos
// the selfie was found in: across every event, or one chosen by name.

import { ApiError, complete, media } from '../api.js';
import { announce, filePicker, formatTime, h, shortId, statusLine } from '../dom.js';
import { photoName } from '../file-names.js';
import { confirmAction } from '../confirm.js';
import { photoTile } from '../gallery.js';
import { pollUntil } from '../poll.js';
import { projectPicker } from '../project.js';
import { describe } from '../reasons.js';
import { stillSignedIn } from '../session.js';
import { declaredType, progressMeter, putToPresigned } from '../transfer.js';

export const title = 'Attendee';
export const needs = { audiences: ['media'], roles: ['user'] };

const PURPOSE = 'biometric_processing';

const FACE_TEXT = {
  waiting: 'waiting for the upload',
  processing: 'looking for your face…',
  indexed: 'face found and indexed: the event photos you appear in are found',
  no_face: 'no face found: take another selfie, facing the camera in good light',
  multiple_faces: 'more than one face: take a selfie of you alone',
  failed: 'face processing failed',
  not_indexed: 'not indexed (no consent when it ran, or a newer selfie replaced it)',
  erased: 'erased, with your face data',
  off: 'face matching is turned off on this service',
};
const FACE_SETTLED = new Set(['indexed', 'no_face', 'multiple_faces', 'failed', 'not_indexed', 'erased', 'off']);

function consentPanel({ onChange }) {
  const status = statusLine({ id: 'consent-status' });
  const grant = h('button', { type: 'button', id: 'consent-grant', onclick: () => act(() => media.grantConsent(PURPOSE)) }, 'I agree: grant consent');
  const revoke = h('button', { type: 'button', id: 'consent-revoke', class: 'danger', hidden: true, onclick: async () => {
    const sure = await confirmAction({
      title: 'Revoke your consent?',
      message: 'Your selfie, your face data and every match are erased at once. You can consent again later, with a new selfie.',
      confirmLabel: 'Revoke and erase',
    });
    if (sure) await act(() => media.revokeConsent(PURPOSE));
  } }, 'Revoke consent and erase my face data');

  async function act(call) {
    try {
      await call();
    } catch (error) {
      status.set(describe(error), 'error');
      return;
    }
    await load();
  }

  async function load() {
    let items;
    try {
      ({ items } = await media.consents());
    } catch (error) {
      status.set(`Could not read your consents: ${describe(error)}`, 'error');
      return;
    }
    const active = items.find((c) => c.purpose === PURPOSE && c.status === 'active');
    const last = items.find((c) => c.purpose === PURPOSE);
    if (active) status.set(`Granted on ${formatTime(active.grantedAt)}.`, 'ok');
    else if (last) status.set(`Revoked on ${formatTime(last.revokedAt)}: your face data was erased.`);
    else status.set('Not granted.');
    status.el.dataset.consent = active ? 'active' : 'none';
    grant.hidden = Boolean(active);
    revoke.hidden = !active;
    onChange(Boolean(active));
  }

  const el = h('div', { class: 'card', 'aria-labelledby': 'consent-title', role: 'region' },
    h('h2', { id: 'consent-title' }, 'Consent to face matching'),
    h('p', {}, 'With your consent, the service finds your face on the selfie you upload and compares it with the faces on the event photos of the projects you look at, to show you the photos you appear in. Nobody else sees your selfie or your matches.'),
    h('p', {}, h('strong', {}, 'Revoking'), ' erases at once your selfie, your face data (the face vector computed from it) and every match found; the event photos stay with their photographer. You can grant consent again later and upload a new selfie.'),
    status.el, h('div', { class: 'row' }, grant, revoke));
  return { el, load };
}

function selfiePanel({ session, onIndexed }) {
  const picker = filePicker({
    id: 'selfie-file', label: 'Take or choose a selfie', capture: 'user',
    onFiles: ([file]) => upload(file),
  });
  picker.input.disabled = true;
  const bar = progressMeter('Selfie upload');
  bar.hidden = true;
  const status = statusLine({ id: 'selfie-status' });
  const face = statusLine({ id: 'face-status' });
  const picture = h('img', { class: 'selfie', alt: 'Your selfie', hidden: true });
  const remove = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: erase }, 'Delete my selfie');
  const gate = h('p', { class: 'hint' }, 'Grant consent first: the selfie is for face matching only.');

  function show(selfie) {
    if (!selfie) {
      status.set('No selfie yet.');
      face.clear();
      picture.hidden = true;
      remove.hidden = true;
      return;
    }
    const tone = selfie.status === 'rejected' ? 'error' : 'info';
    status.set(`Selfie ${shortId(selfie.selfieId)}: ${selfie.status}${selfie.reason ? ` — ${describe(selfie.reason)}` : ''}`, tone);
    const faceTone = { indexed: 'ok', no_face: 'error', multiple_faces: 'error', failed: 'error' }[selfie.face.status] ?? 'info';
    face.set(`Face: ${selfie.face.status} — ${FACE_TEXT[selfie.face.status] ?? selfie.face.reason ?? ''}`, faceTone);
    face.el.dataset.face = selfie.face.status;
    picture.hidden = !selfie.download;
    if (selfie.download) picture.src = selfie.download.url;
    remove.hidden = !selfie.download;
  }

  async function fetchSelfie() {
    try {
      return await media.mySelfie();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  const waiting = (selfie) =>
    selfie && selfie.status !== 'rejected' && !FACE_SETTLED.has(selfie.face.status);

  let polling = null;
  async function follow() {
    const { latest } = await pollUntil(async () => {
      const selfie = await fetchSelfie();
      show(selfie);
      return waiting(selfie) ? null : { latest: selfie };
    }, { active: () => stillSignedIn(session) });
    if (latest?.face.status === 'indexed') {
      announce('Your face was found on your selfie.');
      onIndexed();
    }
  }

  async function load() {
    try {
      const selfie = await fetchSelfie();
      show(selfie);
      if (waiting(selfie) && !polling) {
        polling = follow().finally(() => { polling = null; });
      }
      await polling;
    } catch (error) {
      status.set(`Could not read your selfie: ${describe(error)}`, 'error');
    }
  }

  async function upload(file) {
    bar.hidden = false;
    bar.value = 0;
    try {
      status.set('Uploading your selfie…');
      const target = await media.selfieUploadUrl(declaredType(file));
      await putToPresigned(
        target.uploadUrl, file, (sent, total) => { bar.value = sent / total; }, target.headers);
      await complete(() => media.completeSelfie(target.selfieId));
      await load();
    } catch (error) {
      status.set(`Upload failed: ${describe(error)}`, 'error');
    } finally {
      bar.hidden = true;
    }
  }

  async function erase() {
    try {
      await media.deleteMySelfie();
      await load();
    } catch (error) {
      status.set(describe(error), 'error');
    }
  }

  const el = h('div', { class: 'card', role: 'region', 'aria-labelledby': 'selfie-title' },
    h('h2', { id: 'selfie-title' }, 'Your selfie'),
    gate,
    picker.el,
    bar, status.el, face.el, picture, remove);
  return {
    el,
    load,
    setConsent(active) {
      picker.input.disabled = !active;
      gate.hidden = active;
    },
  };
}

function myPhotosPanel() {
  let consented = false;
  let projectId = null;
  const status = statusLine({ id: 'my-photos-status' });
  const grid = h('ul', { class: 'grid', id: 'my-photos' });
  const picker = projectPicker({ name: 'attendee', action: 'Show', onSubmit: (id) => { projectId = id; load(); } });

  async function notMe(photo) {
    const sure = await confirmAction({
      title: 'Not you in this photo?',
      message: 'It is hidden from your photos for good, even if the photo is processed again.',
      confirmLabel: 'Not me: hide it',
    });
    if (!sure) return;
    try {
      await media.notMe(photo.photoId);
    } catch (error) {
      status.set(describe(error), 'error');
      return;
    }
    await load();
  }

  async function load() {
    if (!consented) {
      grid.replaceChildren();
      status.set('Grant consent to see the photos you appear in.');
      return;
    }
    status.set('Looking…');
    picker.loadProjects();  // the events you appear in, with their counts, may have changed
    try {
      const { items } = await media.myPhotos(projectId);
      grid.replaceChildren(...items.map((p) => {
        // Watermarked previews: what an attendee may keep before buying the photo.
        const preview = p.downloads.watermarked ?? p.downloads['thumb-800'] ?? p.downloads['thumb-400'];
        return photoTile({
          thumb: preview.url,
          large: preview.url,
          alt: `${photoName(p)}, similarity ${p.similarity} %`,
          caption: `${photoName(p)} · similarity ${p.similarity} %`,
          dataset: { photoId: p.photoId, similarity: p.similarity },
          // Your face, highlighted: the only face of the photo an attendee is shown.
          faces: [{ box: { x: p.box.left, y: p.box.top, width: p.box.width, height: p.box.height }, mine: true }],
          size: { width: p.width, height: p.height },
          actions: [h('button', { type: 'button', class: 'secondary small', onclick: () => notMe(p) }, 'Not me')],
        });
      }));
      const where = projectId ? `project ${shortId(projectId)}` : 'your events';
      status.set(items.length
        ? `You appear in ${items.length} photo${items.length > 1 ? 's' : ''} of ${where}.`
        : `No photos of you in ${where} yet.`, items.length ? 'ok' : 'info');
    } catch (error) {
      grid.replaceChildren();
      status.set(describe(error), 'error');
    }
  }

  const el = h('div', { class: 'card', role: 'region', 'aria-labelledby': 'my-photos-title' },
    h('h2', { id: 'my-photos-title' }, 'Photos of me'),
    picker.form, status.el, grid);
  return {
    el,
    load,
    prefill: () => picker.prefill(),
    setConsent(active) {
      consented = active;
      load();
    },
  };
}

export function create({ session }) {
  const photos = myPhotosPanel();
  const selfie = selfiePanel({ session, onIndexed: () => photos.load() });
  const consent = consentPanel({
    onChange: (active) => {
      selfie.setConsent(active);
      photos.setConsent(active);
      selfie.load();
    },
  });

  const root = h('section', { class: 'screen', 'aria-labelledby': 'attendee-title' },
    h('h1', { id: 'attendee-title', tabindex: '-1' }, 'Attendee'),
    h('p', { class: 'lead' }, 'Find the event photos you appear in, with a selfie.'),
    consent.el, selfie.el, photos.el);

  consent.load();
  return { root, show: () => photos.prefill() };
}
