// Recova's small page script: htmx carries the CSRF token, and a few keyboard helpers.
// Everything works without it; it only saves clicks.
document.addEventListener("htmx:configRequest", (event) => {
  const token = document.querySelector('meta[name="csrf-token"]');
  if (token) event.detail.headers["X-CSRFToken"] = token.content;
});

// Buttons and links with data-confirm ask first (a recall, a void, a snapshot load).
document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-confirm]");
  if (target && !window.confirm(target.dataset.confirm)) event.preventDefault();
});

// data-key="k" on a link or button: pressing k (outside a text field) activates it.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const field = event.target.closest("input, textarea, select, [contenteditable]");
  if (field) return;
  const target = document.querySelector(`[data-key="${CSS.escape(event.key)}"]`);
  if (target) {
    event.preventDefault();
    if (target.matches("input, select, textarea")) target.focus();
    else target.click();
  }
});
