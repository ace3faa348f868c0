// A status line for screen readers and sighted users alike. Its tone shows what kind of
// news it is: "success" (done), "warning" (think before going on); failures go in the
// red form-error banners instead.
export function announce(node, message, tone = "success") {
  node.textContent = message;
  node.hidden = !message;
  node.dataset.tone = tone;
}
