// Gantry web UI: makes pages live. Every page works without it; it only
// follows builds and logs over Server-Sent Events and loads earlier log
// lines in place.
(function () {
  'use strict';
  var maxLines = 20000; // lines kept in a followed log; the raw log has all

  var lines = document.getElementById('log-lines');
  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 48; }
  if (lines && location.hash !== '#log-top') { lines.scrollTop = lines.scrollHeight; }

  // "Earlier lines": fetch them and put them in place of the link.
  document.addEventListener('click', function (ev) {
    var a = ev.target.closest ? ev.target.closest('a.earlier') : null;
    if (!a || !a.dataset.fragment || !lines) { return; }
    ev.preventDefault();
    var height = lines.scrollHeight, top = lines.scrollTop;
    fetch(a.dataset.fragment, { credentials: 'same-origin' }).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (html) {
      a.insertAdjacentHTML('afterend', html);
      a.remove();
      lines.scrollTop = top + (lines.scrollHeight - height);
      var next = lines.querySelector('a.earlier');
      if (next) { next.focus(); }
    }).catch(function () { location.href = a.href; });
  });

  // The build page: its state and its log, as they change.
  var build = document.getElementById('build');
  if (build && build.dataset.events) {
    var es = new EventSource(build.dataset.events);
    es.addEventListener('state', function (ev) {
      build.innerHTML = ev.data;
    });
    es.addEventListener('log', function (ev) {
      if (!lines) { return; }
      var stick = atBottom(lines);
      lines.insertAdjacentHTML('beforeend', ev.data);
      var extra = lines.querySelectorAll('.l').length - maxLines;
      if (extra > 0) {
        var old = lines.querySelectorAll('.l, .sh, a.earlier');
        for (var i = 0; i < old.length && extra > 0; i++) {
          if (old[i].classList.contains('l')) { extra--; }
          old[i].remove();
        }
      }
      if (stick) { lines.scrollTop = lines.scrollHeight; }
    });
    es.addEventListener('end', function () {
      es.close();
      document.documentElement.dataset.buildEnded = '1';
    });
    return;
  }

  // The dashboard and repo pages: reload their content when a build
  // changes, at most once a second.
  var main = document.getElementById('main');
  if (main && main.dataset.live) {
    var pending = false, last = 0;
    var refresh = function () {
      fetch(location.href, { credentials: 'same-origin' }).then(function (r) {
        if (!r.ok || r.redirected) { throw new Error(r.status); }
        return r.text();
      }).then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById('main');
        var focused = document.activeElement && document.activeElement.id;
        if (fresh) { main.innerHTML = fresh.innerHTML; }
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
      }).catch(function () {}).then(function () { pending = false; last = Date.now(); });
    };
    var live = new EventSource(main.dataset.live);
    live.addEventListener('build', function () {
      if (pending) { return; }
      pending = true;
      setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
    });
  }
}());
