// vigil: who is logged in, shown in the top bar of the pages, with a log-out button.
// Hidden when the server runs without authentication.
(function () {
  'use strict';
  const box = document.getElementById('session');
  if (!box) return;
  fetch('/api/session', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : null))
    .then((s) => {
      if (!s || !s.auth || !s.name) return;
      box.querySelector('.session-user').textContent = `${s.name} · ${s.role}`;
      box.hidden = false;
    })
    .catch(() => {});
})();
