// Every call the console makes, through the public HTTP API with the session's bearer token.

import { currentSession } from './session.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** An ApiError from an answer body: problem+json, Authgear's {"error"}, S3's XML, or text. */
export function errorFrom(status, body) {
  if (body && typeof body === 'object') {
    if (body.code) return new ApiError(status, body.code, body.detail ?? body.title ?? body.code);
    if (body.error?.reason) return new ApiError(status, body.error.reason, body.error.message);
  }
  const xmlCode = typeof body === 'string' ? /<Code>([^<]+)<\/Code>/.exec(body)?.[1] : null;
  const code = xmlCode ?? `http_${status}`;
  return new ApiError(status, code, `the server answered ${status} (${code})`);
}

export function parseBody(text, contentType) {
  if (contentType?.includes('json')) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

export async function request(method, path, { body, token } = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = token ?? currentSession()?.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network_error', 'the service did not answer: is it running?');
  }
  if (resp.status === 204) return null;
  const data = parseBody(await resp.text(), resp.headers.get('content-type'));
  if (!resp.ok) throw errorFrom(resp.status, data);
  return data;
}

/**
 * Tell the API a PUT is done (`POST .../complete`), so it settles the upload now rather than on
 * a storage event or the sweeper. `upload_incomplete` (409) is no error here: whichever signal
 * comes first settles the upload, and the caller follows it with GETs anyway.
 */
export async function complete(call) {
  try {
    return await call();
  } catch (error) {
    if (error.code === 'upload_incomplete') return null;
    throw error;
  }
}

const q = encodeURIComponent;

/** The Media API (acme-media-api.md, docs/media-api.md) and consents (docs/consent.md). */
export const media = {
  photoUploadUrl: (projectId, audience, contentType = 'image/jpeg') =>
    request('POST', audience === 'backoffice'
      ? '/v1/photographers/me/photos/upload-url' : '/v1/photos/upload-url', { body: { projectId, contentType } }),
  photoUploadUrls: (projectId, count) =>
    request('POST', '/v1/photos/upload-urls', { body: { projectId, count } }),
  completePhoto: (photoId) => request('POST', `/v1/photos/${q(photoId)}/complete`),
  photo: (photoId) => request('GET', `/v1/photos/${q(photoId)}`),
  projectPhotos: (projectId, { cursor, limit = 100 } = {}) =>
    request('GET', `/v1/projects/${q(projectId)}/photos?limit=${limit}${cursor ? `&cursor=${q(cursor)}` : ''}`),
  consents: () => request('GET', '/v1/me/consents'),
  grantConsent: (purpose) => request('PUT', `/v1/me/consents/${q(purpose)}`, { body: { source: 'web-console' } }),
  revokeConsent: (purpose) => request('DELETE', `/v1/me/consents/${q(purpose)}`),
  selfieUploadUrl: (contentType = 'image/jpeg') =>
    request('POST', '/v1/selfie/upload-url', { body: { contentType } }),
  completeSelfie: (selfieId) => request('POST', `/v1/selfie/${q(selfieId)}/complete`),
  // `optional=true`: none yet is 204 (null here), not a 404 the browser reports as an error.
  mySelfie: () => request('GET', '/v1/me/selfie?optional=true'),
  deleteMySelfie: () => request('DELETE', '/v1/me/selfie'),
  // Without a project: every photo the user appears in, newest first.
  myPhotos: (projectId) =>
    request('GET', projectId ? `/v1/me/photos?projectId=${q(projectId)}` : '/v1/me/photos'),
  notMe: (photoId) => request('DELETE', `/v1/me/photos/${q(photoId)}`),
  deletePhoto: (photoId) => request('DELETE', `/v1/photos/${q(photoId)}`),
  // Projects (docs/media-api.md, "Projects"): operators all, photographers theirs, attendees
  // the events they appear in.
  projects: () => request('GET', '/v1/projects'),
  createProject: (body) => request('POST', '/v1/projects', { body }),
  addPhotographer: (projectId, userId) =>
    request('PUT', `/v1/projects/${q(projectId)}/photographers/${q(userId)}`),
  removePhotographer: (projectId, userId) =>
    request('DELETE', `/v1/projects/${q(projectId)}/photographers/${q(userId)}`),
  deleteProject: (projectId) => request('DELETE', `/v1/projects/${q(projectId)}`),
  projectDeletion: (projectId) => request('GET', `/v1/projects/${q(projectId)}/deletion`),
  profilePictureUploadUrl: (contentType = 'image/jpeg') =>
    request('POST', '/v1/operators/me/profile-picture/upload-url', { body: { contentType } }),
  operatorProfilePicture: (operatorId) =>
    request('GET', `/v1/operators/${q(operatorId)}/profile-picture?optional=true`),
};

/** The Images server (authgear-images.md). */
export const images = {
  userUploadUrl: () => request('POST', '/api/images/upload'),
};

/** The console's own two endpoints. */
export const consoleApi = {
  config: () => request('GET', '/console/config', { token: '' }),
  devToken: (role, subject) =>
    request('POST', '/console/dev-token', { body: subject ? { role, subject } : { role }, token: '' }),
};
