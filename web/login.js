// vigil login page: posts the form with fetch so a refusal (wrong password, too many
// attempts) is shown in the page, then goes to `next` (a local path; the server checks
// it again). Without JavaScript the form posts normally and the server redirects.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // Only local paths: "/x" but not "//host" or "/\host" (the server applies the same rule).
  const raw = params.get('next') || '/';
  const next = /^\/(?![\/\\])/.test(raw) && !/[\\\u0000-\u001f]/.test(raw) ? raw : '/';
  $('next').value = next;

  function showError(text) {
    const e = $('error');
    e.textContent = text || '';
    e.hidden = !text;
  }

  // Already logged in (a cross-site link does not carry the SameSite=Strict cookie on its
  // first request, a same-origin fetch does): go straight on.
  fetch('/api/session', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : null))
    .then((s) => { if (s && s.name) location.replace(next); })
    .catch(() => {});

  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const button = $('submit');
    button.disabled = true;
    showError('');
    try {
      const res = await fetch('/login', {
        method: 'POST',
        headers: { 'Accept': 'application/json' },
        body: new URLSearchParams(new FormData($('login'))),
        cache: 'no-store',
      });
      if (res.ok) {
        const body = await res.json().catch(() => ({}));
        location.replace(typeof body.next === 'string' && body.next.startsWith('/') && !body.next.startsWith('//') ? body.next : next);
        return;
      }
      const line = (await res.text().catch(() => '')).trim().split('\n')[0].slice(0, 200);
      showError(line || `HTTP ${res.status}`);
      if (res.status === 401) { $('password').value = ''; $('password').focus(); }
    } catch (e) {
      showError('Cannot reach the vigil server.');
    } finally {
      button.disabled = false;
    }
  });
})();
