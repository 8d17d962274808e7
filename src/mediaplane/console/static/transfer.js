// File bytes go straight to presigned URLs (never through the API), with upload progress:
// XMLHttpRequest because fetch() still reports no upload progress.

import { ApiError, errorFrom, parseBody } from './api.js';

// The types an upload URL can be signed for (docs/media-api.md, "Content types"). A file of
// another type (or none) is declared as JPEG: the service sniffs the bytes and says why it
// refuses them, which is what the person needs to read.
const SIGNABLE_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/heic', 'image/heif', 'image/avif']);
export const DEFAULT_CONTENT_TYPE = 'image/jpeg';

/** The type to ask an upload URL for, from what the browser says the file is. */
export function declaredType(file) {
  return SIGNABLE_TYPES.has(file.type) ? file.type : DEFAULT_CONTENT_TYPE;
}

function send({ method, url, body, headers = {}, onProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress?.(e.loaded, e.total);
    });
    xhr.addEventListener('load', () => {
      const data = parseBody(xhr.responseText, xhr.getResponseHeader('content-type'));
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(errorFrom(xhr.status, data));
    });
    xhr.addEventListener('error', () =>
      reject(new ApiError(0, 'network_error', 'the upload did not reach storage (network or CORS)')));
    xhr.send(body);
  });
}

/** PUT a file to a presigned URL of the Media API, with the headers it was signed for (the
 * `headers` of the upload-url answer). */
export function putToPresigned(url, file, onProgress, headers = { 'Content-Type': DEFAULT_CONTENT_TYPE }) {
  return send({ method: 'PUT', url, body: file, headers, onProgress });
}

/** POST a file as the one `file` part of a multipart form (Images server upload URLs). */
export function postMultipart(url, file, onProgress) {
  const form = new FormData();
  form.append('file', file);
  return send({ method: 'POST', url, body: form, onProgress });
}

/** A <progress> with a "sent of total" caption. */
export function progressMeter(label) {
  const bar = document.createElement('progress');
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute('aria-label', label);
  return bar;
}
