// Machine-readable reasons of the API, in words a user acts on.

const TEXT = {
  not_an_image: 'not an image the service processes (JPEG, PNG, WebP, GIF, AVIF)',
  unsupported_format: 'an image format the service does not process',
  empty_file: 'the file is empty',
  file_too_large: 'the file is larger than the service accepts',
  too_many_pixels: 'the image has more pixels than the service accepts',
  corrupt_image: 'the image data is damaged',
  image_truncated: 'the image data stops short of the size the image claims',
  decode_budget_exhausted: 'the service is busy decoding other images: try again shortly',
  DecodeBudgetExhausted: 'the service is busy decoding other images: try again shortly',
  url_expired: 'nothing arrived before the upload URL expired',
  superseded: 'a newer upload URL replaced this one',
  no_face: 'no face found: face the camera, in good light',
  multiple_faces: 'more than one face: take a selfie alone',
  consent_required: 'this needs your consent to biometric processing',
  insufficient_role: 'your token lacks the role this needs',
  wrong_audience: 'your token is for another audience',
  token_expired: 'your sign-in expired: sign in again',
  invalid_token: 'the token was refused: sign in again',
  missing_token: 'sign in first',
  TooManyRequest: 'too many uploads in a minute: wait a little',
  network_error: 'the request did not get through (network down, or refused as cross-origin)',
};

/** "the image data is damaged (corrupt_image: ...)", for a reason string or an ApiError. */
export function describe(reasonOrError) {
  if (!reasonOrError) return '';
  const isError = typeof reasonOrError !== 'string';
  const raw = isError ? reasonOrError.code : reasonOrError;
  const code = String(raw).replace(/^retrying: /, '').split(':')[0].trim();
  const text = TEXT[code] ?? (isError ? reasonOrError.message : null);
  return text ? `${text} (${raw})` : raw;
}
