// Asking before what cannot be undone (deleting, revoking consent): a native modal <dialog>
// whose safe answer has the focus, and whose Escape means "no".

import { h, uid } from './dom.js';

/** Resolves true when the person confirms, false when they cancel. */
export function confirmAction({ title, message, confirmLabel }) {
  return new Promise((resolve) => {
    const titleId = uid('confirm-title');
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const accept = h('button', { type: 'button', class: 'danger' }, confirmLabel);
    const dialog = h('dialog', { class: 'confirm', role: 'alertdialog', 'aria-labelledby': titleId },
      h('h2', { id: titleId }, title), h('p', {}, message), h('div', { class: 'row' }, cancel, accept));
    const answer = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    cancel.addEventListener('click', () => answer(false));
    accept.addEventListener('click', () => answer(true));
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      answer(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
