// Photo grids and the viewer dialog (a native <dialog>: focus trap, Escape to close).

import { h } from './dom.js';

let viewer;

function viewerDialog() {
  if (viewer) return viewer;
  const img = h('img', { alt: '' });
  const caption = h('p', { class: 'viewer-caption' });
  const links = h('p', { class: 'viewer-links' });
  const close = h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, 'Close');
  const dialog = h('dialog', { class: 'viewer', 'aria-label': 'Photo' },
    h('figure', {}, img, h('figcaption', {}, caption, links)), close);
  // A click on the backdrop (the dialog box itself, outside its content) closes it.
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close();
  });
  document.body.append(dialog);
  viewer = { dialog, img, caption, links, close };
  return viewer;
}

/** Open `src` large, with a caption and links (e.g. the original). */
export function openViewer({ src, alt, caption, links = [] }) {
  const v = viewerDialog();
  v.img.src = src;
  v.img.alt = alt;
  v.caption.textContent = caption ?? '';
  v.links.replaceChildren(...links.map(({ href, label }) =>
    h('a', { href, target: '_blank', rel: 'noopener' }, label)));
  v.dialog.showModal();
  v.close.focus();
}

/**
 * One grid cell: a button showing `thumb` that opens `large` in the viewer.
 * `caption` is visible under the image; `alt` describes it (the image's text alternative);
 * `actions` are buttons under it (delete, "not me").
 */
export function photoTile({ thumb, large, alt, caption, links, dataset, actions = [] }) {
  return h('li', { class: 'tile', dataset },
    h('button', {
      type: 'button', class: 'tile-open', 'aria-label': `Open ${alt}`,
      onclick: () => openViewer({ src: large, alt, caption, links }),
    }, h('img', { src: thumb, alt, loading: 'lazy', decoding: 'async' })),
    caption && h('p', { class: 'tile-caption' }, caption),
    actions.length > 0 && h('div', { class: 'tile-actions' }, actions));
}
