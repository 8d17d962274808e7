// The file name of each photo this browser uploaded, so grids and lists can show it.
// The Media API keeps no file names (its upload-url body is the project id alone); photos
// uploaded elsewhere show their short id instead. Kept in localStorage, the newest LIMIT only.

import { shortId } from './dom.js';

const KEY = 'mediaplane.fileNames';
const LIMIT = 2000;

function read() {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) ?? '{}');
    return stored && typeof stored === 'object' ? stored : {};
  } catch {
    return {};
  }
}

export function rememberFileName(photoId, name) {
  const names = read();
  delete names[photoId];
  names[photoId] = name;
  const ids = Object.keys(names);
  for (const id of ids.slice(0, Math.max(0, ids.length - LIMIT))) delete names[id];
  try {
    localStorage.setItem(KEY, JSON.stringify(names));
  } catch {
    // Storage full or disabled: names are a convenience, the upload goes on.
  }
}

/** The remembered file name of a photo, or null. */
export function fileNameOf(photoId) {
  return read()[photoId] ?? null;
}

/** What a person calls a photo: its file name when this browser uploaded it, else its id. */
export function photoName(photo) {
  return fileNameOf(photo.photoId) ?? `photo ${shortId(photo.photoId)}`;
}
