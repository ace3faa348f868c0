// The call pages' dialogs and notices. Their markup carries role="dialog"/"alertdialog",
// aria-modal and aria-labelledby/aria-describedby.
// askChoice is the app's one question dialog (modal-dialog.js), re-exported for the call pages.
export { askChoice } from "../modal-dialog.js";

/**
 * A non-modal notice announced to screen readers (role="status" in the markup), e.g.
 * "Your clinician would like to carry on". Hidden again after `ms`.
 */
export function flashNotice(element, text, ms = 8000) {
  element.textContent = text;
  element.hidden = false;
  clearTimeout(element._hideTimer);
  element._hideTimer = setTimeout(() => {
    element.hidden = true;
  }, ms);
}
