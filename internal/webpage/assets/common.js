// portfwd: what the client UI (app.js) and the gateway's admin page
// (admin.js) share. Plain JavaScript, no build step; loaded first, it
// leaves one frozen object, window.portfwd.
'use strict';

(() => {
  // el builds an element; string children become text nodes, so text from
  // the router or a client never becomes markup.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // formatSeconds writes a duration as the servers' templates do:
  // 1h 02m 03s.
  function formatSeconds(s) {
    if (s <= 0) return 'expired';
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
    const m = Math.floor(s / 60) % 60, sec = s % 60;
    const p2 = (n) => String(n).padStart(2, '0');
    if (d > 0) return `${d}d ${p2(h)}h ${p2(m)}m`;
    if (h > 0) return `${h}h ${p2(m)}m ${p2(sec)}s`;
    if (m > 0) return `${m}m ${p2(sec)}s`;
    return `${sec}s`;
  }

  // setLive shows the state of the event stream in the page's header.
  function setLive(text, ok) {
    const l = document.querySelector('#live');
    l.textContent = text;
    l.classList.toggle('ok', ok);
  }

  // listen opens the page's event stream (/api/events, authorized by the
  // cookie): handlers maps event names to functions of the decoded data.
  // EventSource reconnects by itself; stopped runs when it gives up (the
  // server is gone, or refuses this page's token).
  function listen(handlers, stopped) {
    const es = new EventSource('/api/events');
    for (const [name, f] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => {
        try { f(JSON.parse(ev.data)); } catch (e) { console.error(name, e); }
      });
    }
    es.addEventListener('open', () => setLive('live', true));
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) {
        setLive('no live updates', false);
        stopped();
      } else {
        setLive('reconnecting…', false);
      }
    });
  }

  window.portfwd = Object.freeze({ el, formatSeconds, listen });
})();
