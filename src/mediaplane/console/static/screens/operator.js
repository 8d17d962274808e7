// Operator: a profile picture through its presigned PUT and GET; projects created, staffed
// with photographers and deleted (with confirmation and progress); and a project overview:
// photos by state and what failed, from the project listing with a backoffice token.

import { ApiError, media } from '../api.js';
import { confirmAction } from '../confirm.js';
import { filePicker, formatTime, h, shortId, statusLine, uid } from '../dom.js';
import { pollUntil } from '../poll.js';
import { projectPicker } from '../project.js';
import { fileNameOf } from '../file-names.js';
import { describe } from '../reasons.js';
import { stillSignedIn } from '../session.js';
import { declaredType, progressMeter, putToPresigned } from '../transfer.js';

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
      const target = await media.profilePictureUploadUrl(declaredType(file));
      await putToPresigned(
        target.uploadUrl, file, (sent, total) => { bar.value = sent / total; }, target.headers);
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
  return { el, prefill: () => picker.prefill(), refresh: () => picker.loadProjects() };
}

/** "" for an empty datetime-local field, else an ISO instant (the field is local time). */
function isoOrNull(value) {
  return value ? new Date(value).toISOString() : null;
}

function projectsPanel({ onChange }) {
  const status = statusLine({ id: 'projects-status' });
  const list = h('ul', { class: 'projects', id: 'projects-list' });
  const nameId = uid('project-name');
  const startsId = uid('project-starts');
  const endsId = uid('project-ends');
  const name = h('input', { id: nameId, name: 'name', type: 'text', required: true, maxlength: 200 });
  const starts = h('input', { id: startsId, name: 'startsAt', type: 'datetime-local' });
  const ends = h('input', { id: endsId, name: 'endsAt', type: 'datetime-local' });
  const form = h('form', { class: 'project-create', novalidate: true },
    h('div', { class: 'row' },
      h('label', { for: nameId }, 'Name'), name,
      h('label', { for: startsId }, 'Starts'), starts,
      h('label', { for: endsId }, 'Ends'), ends,
      h('button', { type: 'submit' }, 'Create project')));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!name.value.trim()) {
      name.setAttribute('aria-invalid', 'true');
      status.set('Give the project a name.', 'error');
      name.focus();
      return;
    }
    name.removeAttribute('aria-invalid');
    try {
      const created = await media.createProject({
        name: name.value.trim(), startsAt: isoOrNull(starts.value), endsAt: isoOrNull(ends.value),
      });
      status.set(`Project “${created.name}” created.`, 'ok');
      form.reset();
      await load();
      onChange();
    } catch (error) {
      status.set(`Could not create the project: ${describe(error)}`, 'error');
    }
  });

  async function act(call, done) {
    try {
      await call();
      if (done) status.set(done, 'ok');
    } catch (error) {
      status.set(describe(error), 'error');
    }
    await load();
  }

  async function remove(project, item) {
    const sure = await confirmAction({
      title: `Delete “${project.name}”?`,
      message: 'Every photo of the project, its previews, faces and matches are erased for good.',
      confirmLabel: 'Delete project',
    });
    if (!sure) return;
    let deletion;
    try {
      deletion = await media.deleteProject(project.projectId);
    } catch (error) {
      status.set(describe(error), 'error');
      return;
    }
    const bar = h('progress', { max: 1, value: 0, 'aria-label': `Deleting ${project.name}` });
    item.append(bar);
    const shown = (d) => {
      bar.max = Math.max(d.photosTotal, 1);
      bar.value = d.photosErased;
      status.set(`Deleting “${project.name}”: ${d.photosErased} of ${d.photosTotal} photos erased.`);
    };
    shown(deletion);
    try {
      deletion = await pollUntil(async () => {
        const d = await media.projectDeletion(project.projectId);
        shown(d);
        return d.status === 'done' ? d : null;
      }, { timeout: 600_000 });
      status.set(`“${project.name}” deleted: ${deletion.photosErased} photos erased.`, 'ok');
    } catch (error) {
      status.set(describe(error), 'error');
    }
    await load();
    onChange();
  }

  function projectItem(p) {
    const assignId = uid('assign');
    const who = h('input', { id: assignId, name: 'photographer', type: 'text', autocomplete: 'off' });
    const item = h('li', { dataset: { projectId: p.projectId } },
      h('strong', {}, p.name), ' ',
      h('span', { class: 'hint' }, [p.startsAt && formatTime(p.startsAt), shortId(p.projectId)].filter(Boolean).join(' · ')),
      h('ul', { class: 'photographers' }, p.photographers.map((userId) =>
        h('li', {}, h('code', {}, userId), ' ',
          h('button', {
            type: 'button', class: 'secondary small',
            onclick: () => act(() => media.removePhotographer(p.projectId, userId)),
          }, `Remove ${userId}`)))),
      h('form', { class: 'row', novalidate: true, onsubmit: (e) => {
        e.preventDefault();
        const userId = who.value.trim();
        if (userId) act(() => media.addPhotographer(p.projectId, userId), `${userId} may now upload to “${p.name}”.`);
      } },
      h('label', { for: assignId }, 'Photographer (user id)'), who,
      h('button', { type: 'submit', class: 'secondary' }, 'Assign'),
      h('button', { type: 'button', class: 'danger', onclick: () => remove(p, item) }, 'Delete project')));
    return item;
  }

  async function load() {
    try {
      const { items } = await media.projects();
      const shown = items.filter((p) => !p.deletion);
      list.replaceChildren(...(shown.length
        ? shown.map(projectItem) : [h('li', { class: 'hint' }, 'No projects yet.')]));
    } catch (error) {
      status.set(`Could not list projects: ${describe(error)}`, 'error');
    }
  }

  const el = h('div', { class: 'card', role: 'region', 'aria-labelledby': 'projects-title' },
    h('h2', { id: 'projects-title' }, 'Projects'),
    form, status.el, list);
  return { el, load };
}

export function create({ session }) {
  const profile = profilePanel(session);
  const overview = overviewPanel();
  const projects = projectsPanel({ onChange: () => overview.refresh() });
  const root = h('section', { class: 'screen', 'aria-labelledby': 'operator-title' },
    h('h1', { id: 'operator-title', tabindex: '-1' }, 'Operator'),
    h('p', { class: 'lead' }, 'Your profile picture, your projects and their photographers, and how the photos of a project are doing.'),
    profile.el, projects.el, overview.el);
  profile.load();
  projects.load();
  return { root, show: () => overview.prefill() };
}
