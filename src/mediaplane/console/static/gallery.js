// Photo grids and the viewer dialog (a native <dialog>: focus trap, Escape to close).

import { h } from './dom.js';

let viewer;

function viewerDialog() {
  if (viewer) return viewer;
  const img = h('img', { alt: '' });
  // The boxes sit on the image in % of its size: a box in pixels of the original lands on
  // the same place of any preview (previews are scaled copies of the upright original).
  const frame = h('div', { class: 'viewer-frame' }, img);
  const caption = h('p', { class: 'viewer-caption' });
  const links = h('p', { class: 'viewer-links' });
  const close = h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, 'Close');
  const dialog = h('dialog', { class: 'viewer', 'aria-label': 'Photo' },
    h('figure', {}, frame, h('figcaption', {}, caption, links)), close);
  // A click on the backdrop (the dialog box itself, outside its content) closes it.
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close();
  });
  document.body.append(dialog);
  viewer = { dialog, frame, img, caption, links, close };
  return viewer;
}

/** A face box over the viewer's image: `box` in pixels of the `size` original. */
function faceBox(box, size, mine) {
  const pct = (v, of) => `${(100 * v) / of}%`;
  const el = h('div', { class: mine ? 'face-box mine' : 'face-box', 'aria-hidden': 'true' });
  // Through the CSSOM: the page's CSP allows no inline style attributes.
  Object.assign(el.style, {
    left: pct(box.x, size.width),
    top: pct(box.y, size.height),
    width: pct(box.width, size.width),
    height: pct(box.height, size.height),
  });
  return el;
}

/**
 * Open `src` large, with a caption and links (e.g. the original). `faces`: boxes
 * ({x, y, width, height}, pixels of the original, `size` = its {width, height}) drawn on it;
 * `mine: true` marks the viewer's own face.
 */
export function openViewer({ src, alt, caption, links = [], faces = [], size }) {
  const v = viewerDialog();
  v.img.src = src;
  v.img.alt = alt;
  v.frame.replaceChildren(v.img, ...(size?.width && size?.height
    ? faces.map((f) => faceBox(f.box, size, f.mine)) : []));
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
export function photoTile({ thumb, large, alt, caption, links, dataset, faces, size, actions = [] }) {
  return h('li', { class: 'tile', dataset },
    h('button', {
      type: 'button', class: 'tile-open', 'aria-label': `Open ${alt}`,
      onclick: () => openViewer({ src: large, alt, caption, links, faces, size }),
    }, h('img', { src: thumb, alt, loading: 'lazy', decoding: 'async' })),
    caption && h('p', { class: 'tile-caption' }, caption),
    actions.length > 0 && h('div', { class: 'tile-actions' }, actions));
}
