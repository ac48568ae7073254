// portfwd gateway's admin page: live updates of the table and the status
// over /api/events, and the delete buttons. Plain JavaScript, no build
// step. Text from clients (descriptions) only ever goes into the page
// through textContent (common.js's el), never as markup.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const { el, formatSeconds, listen } = window.portfwd; // common.js
  const token = $('meta[name="portfwd-token"]').content;

  // The token stays in the HttpOnly cookie and in this page; take it out of
  // the address bar so that it is not bookmarked, shared or kept in history.
  if (new URLSearchParams(location.search).has('token')) {
    history.replaceState(null, '', location.pathname);
  }

  // Countdowns run from what the server last said, so that a page left
  // open keeps time without asking.
  const state = { table: null, tableAt: 0, uptime: Number($('#uptime').dataset.seconds) || 0, uptimeAt: Date.now() };

  function notice(text) {
    $('#notice-text').textContent = text;
    $('#notice').hidden = false;
  }

  // ---- the table ----------------------------------------------------------

  // A row's key: protocol/port, and /address for a mapping on an external
  // pool address (the zero address, the gateway's own, is left out).
  const keyOf = (m) => `${m.protocol}/${m.external_port}` + (m.external_addr ? `/${m.external_addr}` : '');
  // nameOf is how the page names a row's mapping: 8080/TCP, or
  // 198.51.100.2:8080/TCP on a pool address.
  const nameOf = (proto, port, addr) => (addr ? `${addr}:` : '') + `${port}/${proto}`;

  function expiresText(m, elapsed) {
    return m.permanent ? 'never' : formatSeconds(Math.max(0, m.expires_in - elapsed));
  }

  // countText is the table's summary, as the template writes it.
  function countText(t) {
    if (t.mappings.length === 0) return 'No mappings.';
    const parts = t.by_source.filter((c) => c.count > 0).map((c) => `${c.count} by ${c.name}`);
    return `${t.mappings.length} mapping(s): ${parts.join(', ')}.`;
  }

  function row(m) {
    const name = nameOf(m.protocol, m.external_port, m.external_addr);
    return el('tr', { dataset: { key: keyOf(m) }, class: m.enabled ? null : 'off' },
      el('td', { 'data-label': 'Client' }, m.client || 'operator'),
      el('td', { 'data-label': 'Forwards to' }, `${m.internal_addr}:${m.internal_port}`,
        m.enabled ? null : ' ', m.enabled ? null : el('span', { class: 'muted' }, '(disabled)')),
      el('td', { 'data-label': 'External port' }, String(m.external_port),
        m.external_addr ? ' ' : null, m.external_addr ? el('span', { class: 'muted' }, `on ${m.external_addr}`) : null,
        m.remote_host ? ' ' : null, m.remote_host ? el('span', { class: 'muted' }, `only from ${m.remote_host}`) : null,
        m.upstream ? ' ' : null, m.upstream ? el('span', { class: 'muted upstream' }, `⇐ ${m.upstream.public} (${m.upstream.method} upstream)`) : null),
      el('td', { 'data-label': 'Protocol' }, m.protocol),
      el('td', { 'data-label': 'Made by' }, el('span', { class: 'badge source' }, m.source)),
      el('td', { 'data-label': 'Description', class: 'desc' }, m.description),
      el('td', { 'data-label': 'Expires in' }, el('span', { class: 'lease' }, expiresText(m, 0))),
      el('td', { class: 'actions' },
        el('button', { type: 'button', class: 'delete danger', 'aria-label': `Delete ${name}` }, 'Delete')));
  }

  function pinCountText(t) {
    const n = (t.pinholes || []).length;
    return n === 0 ? 'No IPv6 pinholes.' : `${n} IPv6 pinhole(s).`;
  }

  function pinRow(p) {
    const addr = `[${p.internal_addr}]:${p.internal_port}`;
    let from = p.remote_host || 'any host';
    if (p.remote_port) from += `, port ${p.remote_port}`;
    return el('tr', { dataset: { id: String(p.id) } },
      el('td', { 'data-label': 'ID' }, String(p.id)),
      el('td', { 'data-label': 'Client' }, p.client || 'operator'),
      el('td', { 'data-label': 'Open to' }, addr),
      el('td', { 'data-label': 'Protocol' }, p.protocol),
      el('td', { 'data-label': 'From' }, from),
      el('td', { 'data-label': 'Made by' }, el('span', { class: 'badge source' }, p.source)),
      el('td', { 'data-label': 'Expires in' }, el('span', { class: 'lease' }, formatSeconds(p.expires_in))),
      el('td', { class: 'actions' },
        el('button', { type: 'button', class: 'delete danger', 'aria-label': `Close pinhole ${p.id}` }, 'Close')));
  }

  function onMappings(t) {
    state.table = t;
    state.tableAt = Date.now();
    $('#rows').replaceChildren(...t.mappings.map(row));
    $('#table-status').textContent = countText(t);
    $('#pin-rows').replaceChildren(...(t.pinholes || []).map(pinRow));
    $('#pin-status').textContent = pinCountText(t);
  }

  // ---- the status ---------------------------------------------------------

  function totalsText(ts) {
    if (!ts || ts.length === 0) return 'none yet';
    return ts.map((t) => `${t.protocol} ${t.requests}` + (t.error_answers > 0 ? ` (${t.error_answers} with an error code)` : '')).join(', ');
  }

  function countsText(cs) {
    const parts = (cs || []).filter((c) => c.count > 0).map((c) => `${c.name} ${c.count}`);
    return parts.length ? parts.join(', ') : 'none';
  }

  function onStatus(s) {
    state.uptime = s.uptime_seconds;
    state.uptimeAt = Date.now();
    $('#gw-name').textContent = s.name || 'portfwd gateway';
    $('#external-ip').textContent = s.external_addr || 'unknown';
    $('#external-class').textContent = s.external_class ? `(${s.external_class})` : '';
    $('#external-source').textContent = s.external_source ? `from ${s.external_source}` : '';
    $('#external-error').textContent = s.external_error || '';
    const w = $('#external-warning');
    w.textContent = s.external_warning || '';
    w.hidden = !s.external_warning;
    $('#backend').textContent = s.backend;
    $('#upstream').textContent = s.upstream_text || 'not chained';
    $('#policy').replaceChildren(...(s.policy || []).map((line) => el('li', {}, line)));
    const warnings = s.warnings || [];
    $('#warnings').replaceChildren(...warnings.map((line) => el('li', {}, line)));
    $('#warnings').hidden = warnings.length === 0;
    $('#secure-mode').textContent = s.secure_mode ? 'on: clients may map ports only to themselves' : 'off: any client may map to any host';
    $('#totals').textContent = totalsText(s.totals);
    $('#expired').textContent = String(s.expired);
    $('#errors').textContent = countsText(s.errors);
    $('#interface-rows').replaceChildren(...(s.interfaces || []).map((i) => el('tr', {},
      el('td', { 'data-label': 'Interface' }, i.name),
      el('td', { 'data-label': 'Role' }, i.role),
      el('td', { 'data-label': 'Addresses' }, (i.addrs && i.addrs.length) ? i.addrs.join(', ') : el('span', { class: 'muted' }, 'none')),
      el('td', { 'data-label': 'State' }, i.error ? el('span', { class: 'error' }, i.error) : (i.up ? 'up' : 'down')))));
    const services = (s.services || []).map((v) => el('li', {}, `${v.name}: `, el('code', {}, v.addr)));
    $('#services').replaceChildren(...(services.length ? services
      : [el('li', { class: 'muted' }, 'nothing: UPnP and NAT-PMP are both turned off')]));
    $('#counter-rows').replaceChildren(...(s.requests || []).map((c) => el('tr', {},
      el('td', { 'data-label': 'Protocol' }, c.protocol),
      el('td', { 'data-label': 'Request' }, c.action),
      el('td', { 'data-label': 'Result' }, c.result ? String(c.result) : 'success'),
      el('td', { 'data-label': 'Count' }, String(c.count)))));
  }

  // ---- the audit trail ----------------------------------------------------

  function auditRow(r) {
    const t = new Date(r.time);
    const pad = (n) => String(n).padStart(2, '0');
    const local = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
    const what = (r.external_port ? `${r.external_port}/${r.protocol}` : '') + (r.internal ? ` → ${r.internal}` : '');
    return el('tr', { class: `audit-${r.event}` },
      el('td', { 'data-label': 'Time' }, el('time', { datetime: r.time }, local)),
      el('td', { 'data-label': 'Event' }, r.event),
      el('td', { 'data-label': 'Client' }, r.client || 'gateway'),
      el('td', { 'data-label': 'Via' }, r.action ? `${r.via} ${r.action}` : r.via),
      el('td', { 'data-label': 'Mapping' }, what),
      el('td', { 'data-label': 'Description', class: 'desc' }, r.description || ''),
      el('td', { 'data-label': 'Result' }, r.reason ? `${r.result}: ${r.reason}` : r.result));
  }

  function onAudit(a) {
    $('#audit-rows').replaceChildren(...a.records.map(auditRow));
    $('#audit-status').textContent = !a.kept ? 'This gateway keeps no audit trail.'
      : a.records.length === 0 ? 'Nothing yet.'
        : `The last ${a.records.length} change(s) and refusal(s), newest first; audit.jsonl in the state directory has them all.`;
  }

  function tick() {
    $('#uptime').textContent = formatSeconds(state.uptime + Math.floor((Date.now() - state.uptimeAt) / 1000));
    if (!state.table) return;
    const elapsed = Math.floor((Date.now() - state.tableAt) / 1000);
    const rows = $('#rows').children;
    state.table.mappings.forEach((m, i) => {
      const lease = rows[i] && rows[i].querySelector('.lease');
      if (lease) lease.textContent = expiresText(m, elapsed);
    });
    const pins = $('#pin-rows').children;
    (state.table.pinholes || []).forEach((p, i) => {
      const lease = pins[i] && pins[i].querySelector('.lease');
      if (lease) lease.textContent = formatSeconds(Math.max(0, p.expires_in - elapsed));
    });
  }

  async function closePinhole(button) {
    const id = button.closest('tr').dataset.id;
    button.disabled = true;
    try {
      const res = await fetch(`/api/pinholes/${encodeURIComponent(id)}`, {
        method: 'DELETE', headers: { 'X-Portfwd-Token': token }, credentials: 'same-origin', cache: 'no-store',
      });
      let data = null;
      try { data = await res.json(); } catch (e) { /* not JSON */ }
      if (res.status === 404) refresh();
      if (!res.ok) throw new Error((data && data.error) || `the request failed (HTTP ${res.status})`);
      onMappings(data);
    } catch (e) {
      notice(`pinhole ${id}: ${e.message}`);
      button.disabled = false;
    }
  }

  // ---- delete -------------------------------------------------------------

  // confirmDelete asks before deleting: the port closes at once, and the
  // client that made the mapping may be in the middle of a game or a call.
  let toDelete = null;
  function confirmDelete(button) {
    const key = button.closest('tr').dataset.key;
    const m = state.table && state.table.mappings.find((x) => keyOf(x) === key);
    const [proto, port, addr] = key.split('/');
    const name = nameOf(proto, port, addr);
    toDelete = button;
    $('#confirm-title').textContent = `Delete ${name}?`;
    $('#confirm-text').textContent = m
      ? `The gateway will stop forwarding external port ${name} to ${m.internal_addr}:${m.internal_port} at once`
        + ` (made by ${m.source}${m.client ? ` for ${m.client}` : ''}${m.description ? `, "${m.description}"` : ''}); its client may ask for it again.`
      : `The gateway will stop forwarding external port ${name} at once; its client may ask for it again.`;
    $('#confirm-dialog').showModal();
    $('#confirm-cancel').focus();
  }

  async function del(button) {
    const [proto, port, addr] = button.closest('tr').dataset.key.split('/');
    button.disabled = true;
    try {
      const at = addr ? `?external_addr=${encodeURIComponent(addr)}` : '';
      const res = await fetch(`/api/mappings/${encodeURIComponent(proto.toLowerCase())}/${encodeURIComponent(port)}${at}`, {
        method: 'DELETE', headers: { 'X-Portfwd-Token': token }, credentials: 'same-origin', cache: 'no-store',
      });
      let data = null;
      try { data = await res.json(); } catch (e) { /* not JSON */ }
      if (res.status === 404) refresh(); // gone already: the row is stale
      if (!res.ok) throw new Error((data && data.error) || `the request failed (HTTP ${res.status})`);
      onMappings(data);
    } catch (e) {
      notice(`${nameOf(proto, port, addr)}: ${e.message}`);
      button.disabled = false;
    }
  }

  async function refresh() {
    try {
      const res = await fetch('/api/mappings', { headers: { 'X-Portfwd-Token': token }, cache: 'no-store' });
      if (res.ok) onMappings(await res.json());
    } catch (e) { /* the event stream brings it later */ }
  }

  // ---- live updates -------------------------------------------------------

  $('#notice-close').addEventListener('click', () => { $('#notice').hidden = true; });
  // One listener for every row, those the server wrote and those written
  // here.
  $('#rows').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.delete');
    if (b) confirmDelete(b);
  });
  $('#confirm-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    $('#confirm-dialog').close();
    const b = toDelete;
    toDelete = null;
    if (b) del(b);
  });
  $('#pin-rows').addEventListener('click', (ev) => {
    const b = ev.target.closest('button.delete');
    if (b) closePinhole(b);
  });
  $('#confirm-cancel').addEventListener('click', () => { toDelete = null; $('#confirm-dialog').close(); });
  setInterval(tick, 1000);
  listen({ mappings: onMappings, status: onStatus, audit: onAudit }, () => notice('Live updates stopped: portfwd gateway may have been stopped or '
    + 'restarted (the token changes at each start). Reload with the new address.'));
})();
