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

// data-clock="key" on a <time>: mm:ss since the page opened. The screen reloads after each
// step of the call loop, so the start is kept in this tab for the same key (the same case)
// and forgotten when another case opens.
document.addEventListener("DOMContentLoaded", () => {
  const clocks = document.querySelectorAll("[data-clock]");
  if (!clocks.length) return;
  const keep = new Set([...clocks].map((clock) => `recova-clock:${clock.dataset.clock}`));
  for (let n = sessionStorage.length - 1; n >= 0; n -= 1) {
    const key = sessionStorage.key(n);
    if (key && key.startsWith("recova-clock:") && !keep.has(key)) sessionStorage.removeItem(key);
  }
  clocks.forEach((clock) => {
    const key = `recova-clock:${clock.dataset.clock}`;
    let start = Number(sessionStorage.getItem(key));
    if (!start) {
      start = Date.now();
      sessionStorage.setItem(key, String(start));
    }
    const two = (n) => String(n).padStart(2, "0");
    const tick = () => {
      const seconds = Math.max(0, Math.floor((Date.now() - start) / 1000));
      clock.textContent = `${two(Math.floor(seconds / 60))}:${two(seconds % 60)}`;
    };
    tick();
    setInterval(tick, 1000);
  });
});

// A case action opened (by its key or a click) puts the cursor in its first field.
document.addEventListener(
  "toggle",
  (event) => {
    const opened = event.target;
    if (!(opened instanceof HTMLDetailsElement) || !opened.open) return;
    if (!opened.matches(".work-action")) return;
    const first = opened.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  },
  true,
);
