// File bytes go straight to presigned URLs (never through the API), with upload progress:
// XMLHttpRequest because fetch() still reports no upload progress.

import { ApiError, errorFrom, parseBody } from './api.js';

// Every presigned PUT is signed for this type; the service sniffs the bytes for the real one.
export const SIGNED_CONTENT_TYPE = 'image/jpeg';

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

/** PUT a file to a presigned URL of the Media API. */
export function putToPresigned(url, file, onProgress) {
  return send({ method: 'PUT', url, body: file, headers: { 'Content-Type': SIGNED_CONTENT_TYPE }, onProgress });
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
