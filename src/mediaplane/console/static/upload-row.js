// One file of a photographer's batch: name, byte progress, processing steps, failure reason.

import { formatBytes, h } from './dom.js';
import { progressMeter } from './transfer.js';

export const STEP_LABELS = { thumbnail: 'Thumbnail', watermark: 'Watermark', faces: 'Faces' };

export function uploadRow(file, { onRetry }) {
  const bar = progressMeter(`Upload of ${file.name}`);
  const sent = h('span', { class: 'sent' }, `0 B of ${formatBytes(file.size)}`);
  const state = h('span', { class: 'state' }, 'waiting');
  const steps = h('ul', { class: 'steps', 'aria-label': `Processing of ${file.name}` });
  const reason = h('p', { class: 'reason', hidden: true });
  const retry = h('button', { type: 'button', class: 'secondary small', hidden: true, onclick: onRetry },
    'Retry', h('span', { class: 'visually-hidden' }, ` ${file.name}`));
  const el = h('li', { class: 'upload', dataset: { file: file.name, state: 'waiting' } },
    h('div', { class: 'upload-head' }, h('span', { class: 'file-name' }, file.name), state),
    h('div', { class: 'upload-progress' }, bar, sent),
    steps, reason, retry);

  return {
    el,
    setState(name, label = name) {
      el.dataset.state = name;
      state.textContent = label;
    },
    progress(loaded, total) {
      bar.value = total ? loaded / total : 0;
      sent.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}`;
    },
    showSteps(view) {
      steps.replaceChildren(...Object.keys(STEP_LABELS).filter((n) => view.steps?.[n]).map((n) => {
        const step = view.steps[n];
        return h('li', { class: 'step', dataset: { step: n, status: step.status } },
          `${STEP_LABELS[n]}: `, h('span', { class: 'step-status' }, step.status));
      }));
    },
    fail(text, { retry: retryable }) {
      reason.textContent = text;
      reason.hidden = false;
      retry.hidden = !retryable;
    },
    reset() {
      reason.hidden = true;
      retry.hidden = true;
      steps.replaceChildren();
      this.progress(0, file.size);
    },
  };
}
