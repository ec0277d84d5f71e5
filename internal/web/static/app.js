// Gantry web UI: makes pages live. Every page works without it; it only
// follows builds, deployments and logs over Server-Sent Events and loads
// earlier log lines in place.
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

  // The dashboard, repo and environments pages: reload their content
  // when a build (a deployment's too) changes, at most once a second,
  // keeping what the user typed, where the focus was, and a refusal shown.
  var main = document.getElementById('main');
  if (main && main.dataset.live) {
    // A change heard while the page is being read again may not be in
    // what is read: it gets one more reading after this one.
    var timer = null, reading = false, again = false, last = 0;
    // Once a form is sent the page is on its way out: swapping its content
    // now could drop the form before the browser sends it.
    var leaving = false;
    document.addEventListener('submit', function () { leaving = true; }, true);
    window.addEventListener('pageshow', function (e) { if (e.persisted) { leaving = false; } });
    var schedule = function () {
      if (reading) { again = true; return; }
      if (timer) { return; }
      timer = setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
    };
    var refresh = function () {
      timer = null;
      reading = true;
      fetch(main.dataset.self || location.href, { credentials: 'same-origin' }).then(function (r) {
        if (!r.ok || r.redirected) { throw new Error(r.status); }
        return r.text();
      }).then(function (html) {
        if (leaving) { return; }
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById('main');
        if (!fresh) { return; }
        var focused = document.activeElement && document.activeElement.id;
        var typed = {};
        main.querySelectorAll('textarea[id], input[id]').forEach(function (el) {
          if (el.value !== el.defaultValue) { typed[el.id] = el.value; }
        });
        var refusal = document.getElementById('refusal');
        main.innerHTML = fresh.innerHTML;
        Object.keys(typed).forEach(function (id) {
          var el = document.getElementById(id);
          if (el) { el.value = typed[id]; }
        });
        if (refusal && !document.getElementById('refusal')) {
          var h1 = main.querySelector('h1');
          if (h1) { h1.insertAdjacentElement('afterend', refusal); }
        }
        if (focused && document.getElementById(focused)) { document.getElementById(focused).focus(); }
      }).catch(function () {}).then(function () {
        reading = false;
        last = Date.now();
        if (again) { again = false; schedule(); }
      });
    };
    var live = new EventSource(main.dataset.live);
    live.addEventListener('build', schedule);
    // What changed between the page's rendering and the stream's
    // (re)connection was not heard: read the page again once connected.
    live.addEventListener('open', schedule);
  }
}());
