// Photographer: open or create a project, drop many photos; each goes straight to its presigned
// URL with its own progress, then its processing steps update live until done or failed.

import { describe } from '../reasons.js';
import { complete, media } from '../api.js';
import { announce, h, shortId, statusLine } from '../dom.js';
import { photoName, rememberFileName } from '../file-names.js';
import { confirmAction } from '../confirm.js';
import { photoTile } from '../gallery.js';
import { pollUntil } from '../poll.js';
import { projectPicker } from '../project.js';
import { stillSignedIn } from '../session.js';
import { declaredType, putToPresigned } from '../transfer.js';
import { uploadRow } from '../upload-row.js';

export const title = 'Photographer';
export const needs = { audiences: ['media', 'backoffice'], roles: ['photographer'] };

const PARALLEL_TRANSFERS = 3;

/** Runs at most `n` of the given async tasks at once. */
function limiter(n) {
  let active = 0;
  const waiting = [];
  const next = () => {
    if (active >= n || waiting.length === 0) return;
    active += 1;
    const { task, resolve, reject } = waiting.shift();
    task().then(resolve, reject).finally(() => {
      active -= 1;
      next();
    });
  };
  return (task) => new Promise((resolve, reject) => {
    waiting.push({ task, resolve, reject });
    next();
  });
}

function isSettled(view) {
  if (view.status === 'rejected' || view.status === 'expired') return true;
  const steps = Object.values(view.steps ?? {});
  return view.status === 'uploaded' && steps.length > 0
    && steps.every((s) => s.status === 'done' || s.status === 'failed');
}

// Refusals of the bytes themselves: sending the same file again cannot help.
const FINAL_REASONS = new Set(['not_an_image', 'unsupported_format', 'empty_file', 'file_too_large', 'too_many_pixels']);

/** Why a settled photo failed, and whether uploading the file again may help; null if done. */
function failureOf(view) {
  if (view.status !== 'uploaded') {
    return { text: `${view.status}: ${describe(view.reason ?? view.status)}`, retry: !FINAL_REASONS.has(view.reason) };
  }
  const failed = Object.entries(view.steps).filter(([, s]) => s.status === 'failed');
  if (failed.length === 0) return null;
  return { text: failed.map(([name, s]) => `${name} failed: ${describe(s.reason)}`).join('; '), retry: true };
}

export function create({ session }) {
  let projectId = null;
  const transfer = limiter(PARALLEL_TRANSFERS);
  const status = statusLine({ id: 'photographer-status' });

  const picker = projectPicker({
    name: 'photographer', action: 'Open', allowNew: true,
    onSubmit: (id) => {
      projectId = id;
      current.textContent = id;
      status.clear();
      refreshGrid();
    },
  });
  const current = h('code', { class: 'project-current' }, 'none yet');

  const fileInput = h('input', {
    id: 'photo-files', type: 'file', multiple: true, accept: 'image/*', class: 'visually-hidden',
    onchange: () => {
      addFiles([...fileInput.files]);
      fileInput.value = '';
    },
  });
  const dropzone = h('label', { class: 'dropzone', for: 'photo-files' },
    h('strong', {}, 'Drop photos here'), h('span', {}, 'or choose files (JPEG, PNG, WebP…)'));
  for (const type of ['dragenter', 'dragover']) {
    dropzone.addEventListener(type, (e) => {
      e.preventDefault();
      dropzone.classList.add('dragging');
    });
  }
  dropzone.addEventListener('dragleave', () => dropzone.classList.remove('dragging'));
  dropzone.addEventListener('drop', (e) => {
    e.preventDefault();
    dropzone.classList.remove('dragging');
    addFiles([...(e.dataTransfer?.files ?? [])]);
  });

  const uploads = h('ol', { class: 'uploads', id: 'uploads' });
  const grid = h('ul', { class: 'grid', id: 'project-grid' });
  const gridCount = h('span', { class: 'count' });
  const gridStatus = statusLine();
  const more = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: () => refreshGrid(nextCursor) }, 'Load more');
  let nextCursor = null;

  function addFiles(files) {
    if (files.length === 0) return;
    if (!projectId) {
      status.set('Open or create a project first, then add photos.', 'error');
      picker.input.focus();
      return;
    }
    status.set(`${files.length} file${files.length > 1 ? 's' : ''} added to project ${shortId(projectId)}.`);
    const project = projectId; // a retry goes where the first try went
    const batch = Array.from(files);
    const rows = batch.map((file) => {
      const row = uploadRow(file, { onRetry: () => upload(file, row, project) });
      uploads.append(row.el);
      return row;
    });
    // The batch endpoint signs every URL for one type: JPEGs (most of a camera's batch) share
    // it; a PNG, WebP or HEIC asks for its own URL, signed for its type.
    const jpegs = batch.filter((file) => declaredType(file) === 'image/jpeg');
    issueUrls(project, jpegs.length).then((targets) => {
      const issued = new Map(jpegs.map((file, i) => [file, targets[i]]));
      batch.forEach((file, i) => upload(file, rows[i], project, issued.get(file)));
    });
  }

  /** Upload URLs for a whole batch, 100 per request (media audience); none if that fails or
   * for the backoffice dashboard, whose route issues one at a time: each upload then asks. */
  async function issueUrls(project, count) {
    if (count === 0) return [];
    if (session.audiences[0] === 'backoffice') return [];
    const targets = [];
    try {
      for (let start = 0; start < count; start += 100) {
        const { items } = await media.photoUploadUrls(project, Math.min(100, count - start));
        targets.push(...items);
      }
    } catch {
      return [];
    }
    return targets;
  }

  async function upload(file, row, project, issued = null) {
    row.reset();
    row.setState('queued', 'queued');
    try {
      const photoId = await transfer(async () => {
        row.setState('uploading', 'uploading');
        // A retry asks for a new URL: the issued one may belong to an upload that settled.
        const target = issued
          ?? await media.photoUploadUrl(project, session.audiences[0], declaredType(file));
        issued = null;
        rememberFileName(target.photoId, file.name);
        await putToPresigned(
          target.uploadUrl, file, (sent, total) => row.progress(sent, total), target.headers);
        await complete(() => media.completePhoto(target.photoId));
        return target.photoId;
      });
      row.el.dataset.photoId = photoId;
      row.setState('processing', 'processing');
      const view = await pollUntil(async () => {
        const latest = await media.photo(photoId);
        row.showSteps(latest);
        return isSettled(latest) ? latest : null;
      }, { active: () => stillSignedIn(session) });
      const failure = failureOf(view);
      if (failure) {
        row.setState('failed', 'failed');
        row.fail(failure.text, { retry: failure.retry });
        announce(`${file.name}: failed`);
      } else {
        row.setState('done', 'done');
        announce(`${file.name}: done`);
      }
    } catch (error) {
      // The API or the transfer refused or broke off: trying again may well work.
      row.setState('failed', 'failed');
      row.fail(error.code ? describe(error) : error.message, { retry: !FINAL_REASONS.has(error.code) });
      announce(`${file.name}: failed`);
    }
    if (project === projectId) scheduleGridRefresh();
  }

  let refreshTimer;
  function scheduleGridRefresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refreshGrid(), 300);
  }

  async function removePhoto(photo) {
    const sure = await confirmAction({
      title: `Delete ${photoName(photo)}?`,
      message: 'The original, its previews and the faces found in it are erased for good; attendees no longer see it.',
      confirmLabel: 'Delete photo',
    });
    if (!sure) return;
    try {
      await media.deletePhoto(photo.photoId);
      gridStatus.set(`${photoName(photo)} deleted.`, 'ok');
      refreshGrid();
    } catch (error) {
      gridStatus.set(`Could not delete ${photoName(photo)}: ${describe(error)}`, 'error');
    }
  }

  async function refreshGrid(cursor = null) {
    if (!projectId || !stillSignedIn(session)) return;
    try {
      const page = await media.projectPhotos(projectId, { cursor });
      const tiles = page.items.filter((p) => p.downloads['thumb-400']).map((p) => photoTile({
        thumb: p.downloads['thumb-400'].url,
        large: (p.downloads['thumb-800'] ?? p.downloads['thumb-400']).url,
        alt: photoName(p),
        caption: [photoName(p), p.width ? `${p.width}×${p.height}` : '',
          p.steps?.faces?.status === 'done' ? `${p.faces.length} face${p.faces.length === 1 ? '' : 's'}` : '',
        ].filter(Boolean).join(' · '),
        faces: p.faces,
        size: { width: p.width, height: p.height },
        links: [
          { href: p.downloads.original.url, label: 'Original' },
          p.downloads.watermarked && { href: p.downloads.watermarked.url, label: 'Watermarked' },
        ].filter(Boolean),
        dataset: { photoId: p.photoId },
        actions: [h('button', {
          type: 'button', class: 'secondary small', onclick: () => removePhoto(p),
        }, 'Delete')],
      }));
      if (cursor) grid.append(...tiles);
      else grid.replaceChildren(...tiles);
      nextCursor = page.nextCursor;
      more.hidden = !nextCursor;
      gridCount.textContent = `(${grid.children.length})`;
      if (grid.children.length) gridStatus.clear();
      else gridStatus.set('No processed photos in this project yet.');
    } catch (error) {
      gridStatus.set(`Could not list the project’s photos: ${describe(error)}`, 'error');
    }
  }

  const root = h('section', { class: 'screen', 'aria-labelledby': 'photographer-title' },
    h('h1', { id: 'photographer-title', tabindex: '-1' }, 'Photographer'),
    h('p', { class: 'lead' }, 'Upload event photos to a project. Each file goes straight to storage through its own presigned URL; thumbnails, a watermarked preview and face detection follow.'),
    h('div', { class: 'card' }, picker.form, h('p', { class: 'hint' }, 'Current project: ', current)),
    h('div', { class: 'card' }, fileInput, dropzone, status.el,
      h('h2', {}, 'Uploads'), uploads),
    h('div', { class: 'card' },
      h('div', { class: 'card-head' },
        h('h2', {}, 'Photos in this project ', gridCount),
        h('button', { type: 'button', class: 'secondary small', onclick: () => refreshGrid() }, 'Refresh')),
      gridStatus.el, grid, more));

  return { root, show: () => picker.prefill() };
}
