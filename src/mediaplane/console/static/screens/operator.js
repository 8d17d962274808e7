// Operator: a profile picture through its presigned PUT and GET, and a project overview:
// photos by state and what failed, from the project listing with a backoffice token.

import { ApiError, media } from '../api.js';
import { filePicker, formatTime, h, shortId, statusLine } from '../dom.js';
import { pollUntil } from '../poll.js';
import { projectPicker } from '../project.js';
import { fileNameOf } from '../file-names.js';
import { describe } from '../reasons.js';
import { stillSignedIn } from '../session.js';
import { progressMeter, putToPresigned } from '../transfer.js';

export const title = 'Operator';
export const needs = { audiences: ['backoffice'], roles: ['operator'] };

// Every photo is in exactly one state, so the tiles add up to the total; the headline names
// the same states with the same words.
const STATES = [
  ['done', 'Done'],
  ['processing', 'Processing'],
  ['pending', 'Waiting for upload'],
  ['failed', 'Failed'],
  ['rejected', 'Rejected'],
  ['expired', 'Expired'],
];
const PROBLEMS = ['failed', 'rejected', 'expired'];

/** "4 photos: 2 done, 1 waiting for upload, 1 rejected" — the tiles' counts, in words. */
export function overviewHeadline(total, byState) {
  const parts = STATES.filter(([key]) => byState[key] > 0)
    .map(([key, label]) => `${byState[key]} ${label.toLowerCase()}`);
  const photos = `${total} photo${total === 1 ? '' : 's'}`;
  return parts.length ? `${photos}: ${parts.join(', ')}` : photos;
}

/** One word for where a photo is: its upload status, then its steps. */
export function photoState(photo) {
  if (photo.status !== 'uploaded') return photo.status;
  const steps = Object.values(photo.steps ?? {});
  if (steps.some((s) => s.status === 'failed')) return 'failed';
  return steps.length && steps.every((s) => s.status === 'done') ? 'done' : 'processing';
}

function nameIfKnown(photo) {
  const name = fileNameOf(photo.photoId);
  return name ? `${name}: ` : '';
}

function failureText(photo) {
  if (photo.status !== 'uploaded') return describe(photo.reason ?? photo.status);
  return Object.entries(photo.steps)
    .filter(([, s]) => s.status === 'failed')
    .map(([name, s]) => `${name}: ${describe(s.reason)} after ${s.attempts} attempt${s.attempts > 1 ? 's' : ''}`)
    .join('; ');
}

function profilePanel(session) {
  const status = statusLine({ id: 'profile-status' });
  // The API cannot say whether the last upload was refused (no status for profile pictures);
  // a refused one leaves nothing at the key, so the image itself tells.
  const picture = h('img', {
    class: 'avatar', id: 'profile-picture', alt: 'Your profile picture', hidden: true,
    onerror: () => {
      picture.hidden = true;
      status.set('The picture could not be loaded: was the last upload an image?', 'error');
    },
  });
  const fileUrl = h('p', { class: 'hint', hidden: true });
  const bar = progressMeter('Profile picture upload');
  bar.hidden = true;
  const picker = filePicker({ id: 'profile-file', label: 'Upload a profile picture', onFiles: ([file]) => upload(file) });

  async function fetchPicture() {
    try {
      return await media.operatorProfilePicture(session.subject);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  async function load() {
    try {
      const download = await fetchPicture();
      show(download);
    } catch (error) {
      status.set(describe(error), 'error');
    }
  }

  function show(download) {
    picture.hidden = !download;
    if (download) {
      picture.src = download.url;
      status.set(`Shown through a presigned GET, valid ${Math.round(download.expiresInSeconds / 60)} min.`, 'ok');
    } else {
      status.set('No profile picture yet.');
    }
  }

  async function upload(file) {
    bar.hidden = false;
    bar.value = 0;
    try {
      status.set('Uploading…');
      const target = await media.profilePictureUploadUrl();
      await putToPresigned(target.uploadUrl, file, (sent, total) => { bar.value = sent / total; });
      fileUrl.hidden = false;
      fileUrl.replaceChildren('Stored identifier (fileUrl): ', h('code', {}, target.fileUrl));
      // No `complete` exists for profile pictures: wait until the service has noticed it.
      show(await pollUntil(fetchPicture, { timeout: 60_000, active: () => stillSignedIn(session) }));
    } catch (error) {
      status.set(`Upload failed: ${describe(error)}`, 'error');
    } finally {
      bar.hidden = true;
    }
  }

  const el = h('div', { class: 'card', role: 'region', 'aria-labelledby': 'profile-title' },
    h('h2', { id: 'profile-title' }, 'Your profile picture'),
    h('div', { class: 'profile' }, picture, h('div', {}, picker.el, bar, status.el, fileUrl)));
  return { el, load };
}

function overviewPanel() {
  const status = statusLine({ id: 'overview-status' });
  const counts = h('dl', { class: 'counts', id: 'overview-counts' });
  const failures = h('ul', { class: 'failures', id: 'overview-failures' });
  const failuresTitle = h('h3', { hidden: true }, 'Failed, rejected or expired');
  const picker = projectPicker({ name: 'operator', action: 'Load', onSubmit: load });

  async function allPhotos(projectId) {
    const photos = [];
    let cursor = null;
    do {
      const page = await media.projectPhotos(projectId, { cursor, limit: 200 });
      photos.push(...page.items);
      cursor = page.nextCursor;
      status.set(`Reading… ${photos.length} photos`);
    } while (cursor);
    return photos;
  }

  async function load(projectId) {
    status.set('Reading…');
    let photos;
    try {
      photos = await allPhotos(projectId);
    } catch (error) {
      status.set(describe(error), 'error');
      return;
    }
    const byState = Object.fromEntries(STATES.map(([key]) => [key, 0]));
    for (const photo of photos) byState[photoState(photo)] += 1;
    counts.replaceChildren(
      h('div', { class: 'count-total' }, h('dt', {}, 'Photos'), h('dd', {}, photos.length)),
      ...STATES.map(([key, label]) =>
        h('div', { dataset: { state: key } }, h('dt', {}, label), h('dd', {}, byState[key]))));
    const failed = photos.filter((p) => PROBLEMS.includes(photoState(p)));
    failuresTitle.hidden = failed.length === 0;
    failures.replaceChildren(...failed.map((p) =>
      h('li', { dataset: { photoId: p.photoId } },
        h('code', {}, shortId(p.photoId)), ` ${nameIfKnown(p)}${photoState(p)} — ${failureText(p)}`,
        h('span', { class: 'hint' }, ` (${formatTime(p.createdAt)})`))));
    status.set(`Project ${shortId(projectId)}: ${overviewHeadline(photos.length, byState)}.`,
      failed.length ? 'error' : 'ok');
  }

  const el = h('div', { class: 'card', role: 'region', 'aria-labelledby': 'overview-title' },
    h('h2', { id: 'overview-title' }, 'Project overview'),
    picker.form, status.el, counts, failuresTitle, failures);
  return { el, prefill: () => picker.prefill() };
}

export function create({ session }) {
  const profile = profilePanel(session);
  const overview = overviewPanel();
  const root = h('section', { class: 'screen', 'aria-labelledby': 'operator-title' },
    h('h1', { id: 'operator-title', tabindex: '-1' }, 'Operator'),
    h('p', { class: 'lead' }, 'Your profile picture, and how the photos of a project are doing.'),
    profile.el, overview.el);
  profile.load();
  return { root, show: () => overview.prefill() };
}
