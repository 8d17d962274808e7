// Who is signed in: the bearer token and what its claims say (read, not verified: the API
// verifies every call). Kept in sessionStorage: per tab, gone when the tab closes.

const KEY = 'mediaplane.console.session';

export const HOME_BY_ROLE = { user: 'attendee', photographer: 'photographer', operator: 'operator' };

export function currentSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    return stored && !isExpired(stored) ? stored : null;
  } catch {
    return null;
  }
}

/** Keep `token` as the session; throws when it is not a JWT. */
export function signIn(token, via) {
  const claims = decodeClaims(token);
  const session = {
    token,
    via,
    subject: claims.sub ?? '',
    audiences: [claims.aud ?? []].flat(),
    roles: [...new Set([claims.role ?? [], claims.roles ?? []].flat())],
    expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : null,
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  document.dispatchEvent(new CustomEvent('session-changed'));
  return session;
}

/** Whether `session` is still the one signed in: a screen built for another identity stops its
 * background work (refreshes, polls) instead of calling the API with the new token. */
export function stillSignedIn(session) {
  return Boolean(session) && currentSession()?.token === session.token;
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  document.dispatchEvent(new CustomEvent('session-changed'));
}

export function decodeClaims(token) {
  const parts = token.trim().split('.');
  if (parts.length !== 3) throw new Error('A bearer token is a JWT: three dot-separated parts.');
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error('The token’s payload is not readable JSON.');
  }
}

function isExpired(session) {
  return session.expiresAt != null && session.expiresAt <= Date.now();
}

/** Whether the session carries one of `audiences` and one of `roles` (if any are named). */
export function allows(session, { audiences, roles = [] }) {
  if (!session) return false;
  const audOk = audiences.some((a) => session.audiences.includes(a));
  const roleOk = roles.length === 0 || roles.some((r) => session.roles.includes(r));
  return audOk && roleOk;
}

/** The screen a session lands on after sign-in. */
export function homeScreen(session) {
  const role = session?.roles.find((r) => HOME_BY_ROLE[r]);
  return role ? HOME_BY_ROLE[role] : 'images';
}
