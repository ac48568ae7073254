// portfwd ui: the page's behaviour. Plain JavaScript, no framework, no
// build step. Every router operation is an asynchronous call to the JSON
// API (docs/api.md) with a spinner; live changes arrive over /api/events.
// Text from the router (descriptions, names) only ever goes into the page
// through textContent, never as markup.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const token = document.querySelector('meta[name="portfwd-token"]').content;
  const features = {
    keep: document.body.dataset.keep === 'true',
    check: document.body.dataset.check === 'true',
  };

  // The token stays in the HttpOnly cookie and in this page; take it out of
  // the address bar so that it is not bookmarked, shared or kept in history.
  if (new URLSearchParams(location.search).has('token')) {
    history.replaceState(null, '', location.pathname);
  }

  const state = {
    gateways: [],
    selected: '',
    table: null,        // the last mappings payload for the selected gateway
    receivedAt: 0,      // when it arrived (ms), for the lease countdown
    sort: { key: 'external_port', dir: 1 },
    picked: new Set(),  // keys of the rows whose checkbox is ticked
    editing: null,      // the mapping being edited, or null when adding
    localAddr: '',
  };

  // ---- small helpers ------------------------------------------------------

  const { el, formatSeconds, listen } = window.portfwd; // common.js

  const keyOf = (m) => `${m.protocol}/${m.external_port}/${m.remote_host || ''}`;
  const nameOf = (m) => `${m.external_port}/${m.protocol}`;

  // ---- busy indicator, notices --------------------------------------------

  const pending = new Map();
  let nextJob = 0;
  function startJob(text) {
    const id = ++nextJob;
    pending.set(id, text);
    showBusy();
    return () => { pending.delete(id); showBusy(); };
  }
  function showBusy() {
    const busy = $('#busy');
    if (pending.size === 0) {
      busy.hidden = true;
      document.body.removeAttribute('aria-busy');
      return;
    }
    const texts = [...pending.values()];
    $('#busy-text').textContent = texts[texts.length - 1] + (texts.length > 1 ? ` (+${texts.length - 1} more)` : '');
    busy.hidden = false;
    document.body.setAttribute('aria-busy', 'true');
  }

  function notice(text) {
    $('#notice-text').textContent = text;
    $('#notice').hidden = false;
  }
  function clearNotice() { $('#notice').hidden = true; }

  let toastTimer = 0;
  function toast(text) {
    const t = $('#toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
  }

  // ---- API ----------------------------------------------------------------

  class APIError extends Error {
    constructor(message, status, body) {
      super(message);
      this.status = status;
      this.body = body || {};
    }
  }

  // api calls the JSON API with the token header, showing `what` while it
  // runs. It resolves to the decoded body, or rejects with an APIError that
  // carries the server's sentence.
  async function api(method, path, body, what) {
    const done = startJob(what || 'Working…');
    try {
      const opts = { method, headers: { 'X-Portfwd-Token': token }, credentials: 'same-origin', cache: 'no-store' };
      if (body !== undefined) {
        opts.headers['Content-Type'] = 'application/json';
        opts.body = JSON.stringify(body);
      }
      let res;
      try {
        res = await fetch(path, opts);
      } catch (e) {
        throw new APIError('portfwd ui does not answer: is it still running in its terminal?', 0);
      }
      let data = null;
      try { data = await res.json(); } catch (e) { /* not JSON */ }
      if (!res.ok) {
        throw new APIError((data && data.error) || `the request failed (HTTP ${res.status})`, res.status, data);
      }
      return data;
    } finally {
      done();
    }
  }

  // ---- gateways and discovery ---------------------------------------------

  function onDiscovery(d) {
    const p = $('#discovery');
    p.replaceChildren();
    p.classList.toggle('error', !!d.error && !d.running);
    if (d.running) p.append(el('span', { class: 'spinner', 'aria-hidden': 'true' }), ' ');
    p.append(d.running ? (d.message || 'Searching for gateways…') : (d.error || d.message || ''));
    $('#discover').disabled = !!d.running;
    state.discovery = d;
    if (state.gateways.length === 0) $('#gateway').replaceChildren(el('option', { value: '' }, placeholder(d)));
  }

  // placeholder is the router list's one line while it is empty: it says
  // what the discovery line says, never "none found" while one is found.
  function placeholder(d) {
    if (d && d.running) return d.found > 0 ? 'found, reading its details…' : 'searching…';
    if (d && d.done) return 'none found';
    return 'searching…';
  }

  // gatewayDetail is the line under the router list: the whole name, the
  // protocol and the address, which a phone-wide list cannot show.
  function gatewayDetail(g) {
    if (!g) return '';
    const where = g.addr ? ` at ${g.addr}` : '';
    return `${g.name || g.addr}: ${methodName(g.method)}${where}`;
  }

  // noGatewayYet disables what needs a gateway, saying why.
  function noGatewayYet() {
    const none = !state.selected;
    for (const id of ['#add', '#refresh']) {
      const b = $(id);
      b.disabled = none;
      if (none) b.title = 'No gateway yet: search for one first.';
      else b.removeAttribute('title');
    }
  }

  const methodName = (m) => ({ upnp: 'UPnP', natpmp: 'NAT-PMP', pcp: 'PCP' })[m] || m;

  // gatewayLabel names a router in the list, short enough for a phone:
  // its external address is shown below the list, and its whole name and
  // address under it (gatewayDetail).
  function gatewayLabel(g) {
    return `${g.name || g.addr} (${methodName(g.method)})`;
  }

  function onGateways(p) {
    state.gateways = p.gateways || [];
    const sel = $('#gateway');
    sel.replaceChildren();
    for (const g of state.gateways) {
      sel.append(el('option', { value: g.id, selected: g.id === p.selected }, gatewayLabel(g)));
    }
    sel.disabled = state.gateways.length === 0;
    onDiscovery(p.discovery);
    const changed = (p.selected || '') !== state.selected;
    state.selected = p.selected || '';
    const g = state.gateways.find((x) => x.id === state.selected);
    state.localAddr = g ? (g.local_addr || '') : '';
    $('#gateway-detail').textContent = gatewayDetail(g);
    noGatewayYet();
    if (changed) {
      state.table = null;
      state.picked.clear();
      render();
      if (state.selected) {
        loadMappings();
        if ($('#more').open) loadInfo();
      }
    }
  }

  function onExternal(p) {
    if (p.gateway !== state.selected) return;
    $('#external-ip').textContent = p.external_ip || 'unknown';
    $('#external-class').textContent = p.class ? `(${p.class})` : '';
    const w = $('#external-warning');
    const text = p.warning || (p.error ? `The external address could not be read: ${p.error}` : '');
    w.textContent = text;
    w.hidden = !text;
  }

  async function discover() {
    try {
      const p = await api('POST', '/api/discover', undefined, 'Searching for gateways…');
      onDiscovery(p.discovery);
    } catch (e) {
      notice(e.message);
    }
  }

  async function selectGateway(id) {
    try {
      onGateways(await api('PUT', '/api/gateway', { id }, 'Switching gateway…'));
    } catch (e) {
      notice(e.message);
    }
  }

  const infoFields = [
    ['friendly_name', 'Name'], ['manufacturer', 'Manufacturer'], ['manufacturer_url', 'Manufacturer site'],
    ['model_name', 'Model'], ['model_number', 'Model number'], ['model_description', 'Model description'],
    ['serial_number', 'Serial number'], ['udn', 'UDN'], ['presentation_url', 'Admin page'],
    ['location', 'Description URL'], ['control_url', 'Control URL'], ['service_type', 'Service'],
    ['server', 'NAT-PMP server'], ['epoch', 'NAT-PMP epoch (s)'], ['connection_status', 'Connection'],
    ['connection_type', 'Connection type'], ['uptime_seconds', 'Uptime'], ['link_type', 'Link type'],
    ['link_status', 'Link status'], ['downstream_bps', 'Downstream'], ['upstream_bps', 'Upstream'],
    ['external_ip', 'External address'],
  ];

  function formatInfo(k, v) {
    if (k === 'uptime_seconds') return formatSeconds(v);
    if (k.endsWith('_bps')) {
      if (v >= 1e9) return `${(v / 1e9).toFixed(1)} Gbit/s`;
      if (v >= 1e6) return `${(v / 1e6).toFixed(1)} Mbit/s`;
      return `${Math.round(v / 1e3)} kbit/s`;
    }
    return String(v);
  }

  async function loadInfo() {
    const box = $('#info');
    box.replaceChildren(el('p', { class: 'muted' }, el('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Reading the router\'s details…'));
    try {
      const d = await api('GET', '/api/gateway', undefined, 'Reading the router\'s details…');
      const dl = el('dl', { class: 'info' });
      dl.append(el('dt', {}, 'Protocol'), el('dd', {}, d.method === 'upnp' ? 'UPnP IGD' : methodName(d.method)));
      if (d.local_addr) dl.append(el('dt', {}, 'This computer'), el('dd', {}, d.local_addr));
      const info = d.info || {};
      for (const [k, label] of infoFields) {
        if (info[k] === undefined || info[k] === '' || info[k] === 0) continue;
        dl.append(el('dt', {}, label), el('dd', {}, formatInfo(k, info[k])));
      }
      if (info.services && info.services.length) {
        dl.append(el('dt', {}, 'Services'), el('dd', {}, el('ul', {}, ...info.services.map((s) => el('li', {}, s)))));
      }
      box.replaceChildren(dl);
      if (d.error) box.append(el('p', { class: 'warning' }, d.error));
      onExternal({ gateway: d.id, external_ip: d.external_ip, class: d.class, warning: d.warning });
    } catch (e) {
      box.replaceChildren(el('p', { class: 'error' }, e.message));
    }
  }

  // ---- the table ----------------------------------------------------------

  async function loadMappings() {
    if (!state.selected) return;
    try {
      onMappings(await api('GET', '/api/mappings', undefined, 'Reading the mapping table…'));
    } catch (e) {
      $('#table-status').textContent = e.message;
    }
  }

  function onMappings(p) {
    if (p.gateway !== state.selected) return;
    // An answer that overtook a newer one (the API's and the event
    // stream's) must not bring old rows back.
    if (state.table && p.read_at && state.table.read_at && Date.parse(p.read_at) < Date.parse(state.table.read_at)) return;
    state.table = p;
    state.receivedAt = Date.now();
    const live = new Set(p.mappings.map(keyOf));
    for (const k of [...state.picked]) if (!live.has(k)) state.picked.delete(k);
    render();
  }

  function ipValue(s) {
    const parts = String(s).split('.');
    if (parts.length === 4) return parts.reduce((a, x) => a * 256 + Number(x), 0);
    return Number.MAX_SAFE_INTEGER;
  }

  function sortValue(m, key) {
    switch (key) {
      case 'lease': return m.permanent ? Number.MAX_SAFE_INTEGER : m.lease_seconds;
      case 'internal_client': return ipValue(m.internal_client);
      case 'enabled': return m.enabled ? 1 : 0;
      case 'description': return (m.description || '').toLowerCase();
      default: return m[key];
    }
  }

  function sorted(ms) {
    const { key, dir } = state.sort;
    return [...ms].sort((a, b) => {
      const x = sortValue(a, key), y = sortValue(b, key);
      if (x < y) return -dir;
      if (x > y) return dir;
      return a.external_port - b.external_port || (a.protocol < b.protocol ? -1 : 1);
    });
  }

  function leaseLeft(m) {
    return Math.max(0, m.lease_seconds - Math.floor((Date.now() - state.receivedAt) / 1000));
  }

  function row(m) {
    const key = keyOf(m);
    const cells = [
      el('td', { class: 'sel' }, el('input', {
        type: 'checkbox', class: 'pick', 'aria-label': `Select ${nameOf(m)}`, checked: state.picked.has(key),
        onchange: (ev) => { if (ev.target.checked) state.picked.add(key); else state.picked.delete(key); updatePicked(); },
      })),
      el('td', { 'data-label': 'Protocol' }, m.protocol),
      el('td', { 'data-label': 'External port' }, String(m.external_port),
        m.remote_host ? el('span', { class: 'muted' }, ` only from ${m.remote_host}`) : null),
      el('td', { 'data-label': 'Internal client' }, m.internal_client,
        m.this_host ? el('span', { class: 'badge' }, 'this computer') : null),
      el('td', { 'data-label': 'Internal port' }, String(m.internal_port)),
      el('td', { 'data-label': 'Description', class: 'desc' }, m.description),
      el('td', { 'data-label': 'Lease' }, el('span', { class: 'lease', dataset: { key } },
        m.permanent ? 'permanent' : formatSeconds(leaseLeft(m)))),
      el('td', { 'data-label': 'Enabled' }, m.enabled ? 'yes' : 'no'),
    ];
    if (features.keep) {
      cells.push(el('td', { 'data-label': 'Keep open' }, el('input', {
        type: 'checkbox', class: 'keep', 'aria-label': `Keep ${nameOf(m)} open`, checked: !!m.kept,
        onchange: (ev) => setKeep(m, ev.target),
      })));
    }
    const actions = el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'edit', 'aria-label': `Edit ${nameOf(m)}`, onclick: () => openForm(m) }, 'Edit'),
      el('button', { type: 'button', class: 'delete danger', 'aria-label': `Delete ${nameOf(m)}`, onclick: () => confirmDelete([m]) }, 'Delete'));
    if (features.check) {
      actions.append(el('button', { type: 'button', class: 'check', 'aria-label': `Check that ${nameOf(m)} is reachable`, onclick: (ev) => check(m, ev.target) }, 'Check'));
    }
    cells.push(actions);
    return el('tr', { dataset: { key }, class: m.enabled ? null : 'off' }, ...cells);
  }

  function render() {
    const t = state.table;
    const status = $('#table-status');
    const tbody = $('#rows');
    for (const th of document.querySelectorAll('th[data-sort]')) {
      th.setAttribute('aria-sort', th.dataset.sort === state.sort.key ? (state.sort.dir > 0 ? 'ascending' : 'descending') : 'none');
    }
    if (!state.selected) {
      tbody.replaceChildren();
      status.textContent = 'The table appears once a gateway is found.';
    } else if (!t) {
      tbody.replaceChildren();
      status.textContent = 'Reading the table…';
    } else if (!t.supported) {
      tbody.replaceChildren();
      const g = state.gateways.find((x) => x.id === state.selected);
      status.textContent = `This router speaks ${g ? methodName(g.method) : 'a protocol'}, which cannot list its mappings. You can still add mappings for this computer here; the API edits and deletes them by external port.`;
    } else {
      tbody.replaceChildren(...sorted(t.mappings).map(row));
      const n = t.mappings.length;
      status.textContent = (t.error ? t.error + ' ' : '') + (n === 0 ? 'No mappings.' : `${n} mapping${n === 1 ? '' : 's'}.`);
    }
    updatePicked();
  }

  function updatePicked() {
    const n = state.picked.size;
    const btn = $('#delete-selected');
    btn.disabled = n === 0;
    btn.textContent = n ? `Delete selected (${n})` : 'Delete selected';
    const all = $('#select-all');
    const total = state.table && state.table.mappings ? state.table.mappings.length : 0;
    all.checked = total > 0 && n === total;
    all.indeterminate = n > 0 && n < total;
  }

  // tick counts the leases down once a second, without asking the router.
  function tick() {
    if (!state.table || !state.table.mappings) return;
    const byKey = new Map(state.table.mappings.map((m) => [keyOf(m), m]));
    for (const span of document.querySelectorAll('#rows .lease')) {
      const m = byKey.get(span.dataset.key);
      if (m && !m.permanent) span.textContent = formatSeconds(leaseLeft(m));
    }
  }

  // ---- add / edit ---------------------------------------------------------

  const form = {
    dialog: $('#edit-dialog'),
    protocol: $('#f-protocol'),
    internalPort: $('#f-internal-port'),
    externalPort: $('#f-external-port'),
    client: $('#f-internal-client'),
    description: $('#f-description'),
    lease: $('#f-lease'),
    enabled: $('#f-enabled'),
    any: $('#f-any'),
    keep: $('#f-keep'),
    error: $('#form-error'),
    submit: $('#edit-submit'),
  };
  const fieldInputs = {
    protocol: form.protocol, internal_port: form.internalPort, external_port: form.externalPort,
    internal_client: form.client, description: form.description, lease_seconds: form.lease,
  };

  function formError(text, field) {
    for (const input of Object.values(fieldInputs)) input.removeAttribute('aria-invalid');
    form.error.textContent = text || '';
    form.error.hidden = !text;
    // The message is at the top of the form, which may be scrolled; the
    // field at fault then takes the focus.
    if (text) form.error.scrollIntoView({ block: 'nearest' });
    const input = field && fieldInputs[field];
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  }

  function openForm(m) {
    state.editing = m || null;
    formError('');
    const adding = !m;
    $('#edit-title').textContent = adding ? 'Add a mapping' : `Edit ${nameOf(m)}`;
    form.submit.textContent = adding ? 'Add' : 'Save';
    $('#f-protocol-both').hidden = !adding;
    form.protocol.disabled = !adding;
    $('#f-any-row').hidden = !adding;
    if (form.keep) $('#f-keep-row').hidden = !adding;
    $('#f-internal-client-hint').textContent = state.localAddr
      ? `The computer to forward to. Empty: this computer (${state.localAddr}).`
      : 'The computer to forward to. Empty: this computer.';
    if (adding) {
      form.protocol.value = 'tcp';
      form.internalPort.value = '';
      form.externalPort.value = '';
      form.client.value = '';
      form.description.value = 'portfwd';
      form.lease.value = '0';
      form.enabled.checked = true;
      form.any.checked = false;
      if (form.keep) form.keep.checked = false;
    } else {
      form.protocol.value = m.protocol.toLowerCase();
      form.internalPort.value = m.internal_port;
      form.externalPort.value = m.external_port;
      form.client.value = m.internal_client;
      form.description.value = m.description;
      form.lease.value = m.permanent ? '0' : formatLease(leaseLeft(m));
      form.enabled.checked = m.enabled;
    }
    form.shownLease = form.lease.value;
    form.dialog.showModal();
    form.internalPort.focus();
  }

  // formatLease writes a lease for the form, rounded to what a person
  // would type: whole hours from a day up, whole minutes from an hour up
  // (604676 seconds is "7d", 5400 is "1h 30m").
  function formatLease(secs) {
    let s = secs;
    if (s >= 86400) s = Math.round(s / 3600) * 3600;
    else if (s >= 3600) s = Math.round(s / 60) * 60;
    if (s <= 0) return '0';
    const parts = [];
    for (const [unit, n] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
      if (s >= n) {
        parts.push(`${Math.floor(s / n)}${unit}`);
        s %= n;
      }
    }
    return parts.join(' ');
  }

  // parseLease reads the lease field: "2h", "90m", "1d 12h", "1h30m",
  // "45s", or 0 (or empty) for permanent. It returns seconds, or the
  // sentence saying what is wrong.
  function parseLease(text) {
    const t = text.trim().toLowerCase().replace(/\s+/g, '');
    if (t === '' || t === '0' || t === 'permanent') return 0;
    if (/^\d+$/.test(t)) return `The lease "${text.trim()}" has no unit: write ${t}s, ${t}m, ${t}h or ${t}d (0 for permanent).`;
    const re = /(\d+)(d|h|m|s)/gy;
    const mult = { d: 86400, h: 3600, m: 60, s: 1 };
    let total = 0, m;
    while ((m = re.exec(t)) !== null) {
      total += Number(m[1]) * mult[m[2]];
      if (re.lastIndex === t.length) return total;
    }
    return `The lease "${text.trim()}" is not a length of time: write it like 2h, 30m, 1d 12h or 7d (0 for permanent).`;
  }

  // portValue reads a port field: null when empty, NaN when not a port.
  function portValue(input) {
    const s = input.value.trim();
    if (s === '') return null;
    if (!/^\d+$/.test(s)) return NaN;
    const n = Number(s);
    return n >= 1 && n <= 65535 ? n : NaN;
  }

  const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
  const looksLikeIP = (s) => ipv4.test(s) || (/^[0-9a-fA-F:.]+$/.test(s) && s.includes(':'));

  // readForm checks the form as the server will, so that most mistakes are
  // caught without a round trip; the server checks again.
  function readForm() {
    const internal = portValue(form.internalPort);
    if (internal === null || Number.isNaN(internal)) return { error: 'The internal port must be a number from 1 to 65535.', field: 'internal_port' };
    const external = portValue(form.externalPort);
    if (Number.isNaN(external)) return { error: 'The external port must be a number from 1 to 65535, or empty for the same as the internal port.', field: 'external_port' };
    const client = form.client.value.trim();
    if (client !== '' && !looksLikeIP(client)) return { error: `The internal client must be an IP address such as 192.168.1.20, not "${client}".`, field: 'internal_client' };
    const lease = parseLease(form.lease.value);
    if (typeof lease === 'string') return { error: lease, field: 'lease_seconds' };
    if (lease > 4294967295) return { error: 'The lease is too long: at most 49710d.', field: 'lease_seconds' };
    const description = form.description.value;
    if (/[\u0000-\u001f\u007f]/.test(description)) return { error: 'The description must not contain control characters.', field: 'description' };
    return { internal, external, client, lease, description };
  }

  async function submitForm(ev) {
    ev.preventDefault();
    const v = readForm();
    if (v.error) {
      formError(v.error, v.field);
      return;
    }
    formError('');
    form.submit.disabled = true;
    try {
      const m = state.editing;
      if (!m) {
        const body = {
          protocol: form.protocol.value, internal_port: v.internal, external_port: v.external || 0,
          internal_client: v.client, lease_seconds: v.lease, description: v.description,
          enabled: form.enabled.checked, any: form.any.checked,
        };
        if (form.keep && form.keep.checked) body.keep = true;
        const res = await api('POST', '/api/mappings', body, 'Adding the mapping…');
        const names = res.mappings.map(nameOf).join(' and ');
        toast(`Added ${names}.` + (res.keep_error ? ` It cannot be kept open: ${res.keep_error}` : ''));
      } else {
        const body = {};
        if (v.internal !== m.internal_port) body.internal_port = v.internal;
        if ((v.external || m.external_port) !== m.external_port) body.external_port = v.external;
        if (v.client !== '' && v.client !== m.internal_client) body.internal_client = v.client;
        if (v.description !== m.description) body.description = v.description;
        if (form.enabled.checked !== m.enabled) body.enabled = form.enabled.checked;
        // The form shows the lease left rounded (7d for 6d 23h 57m): an
        // untouched field asks for no change.
        if (form.lease.value.trim() !== form.shownLease) body.lease_seconds = v.lease;
        const path = `/api/mappings/${m.protocol.toLowerCase()}/${m.external_port}` + (m.remote_host ? `?remote=${encodeURIComponent(m.remote_host)}` : '');
        const res = await api('PUT', path, body, `Changing ${nameOf(m)}…`);
        toast(`Changed ${nameOf(m)}` + (res.mapping && res.mapping.external_port !== m.external_port ? `; it is now ${nameOf(res.mapping)}.` : '.'));
      }
      form.dialog.close();
      loadMappings();
    } catch (e) {
      formError(e.message, e.body.field);
    } finally {
      form.submit.disabled = false;
    }
  }

  // ---- delete -------------------------------------------------------------

  let toDelete = [];
  function confirmDelete(ms) {
    if (ms.length === 0) return;
    toDelete = ms;
    $('#confirm-title').textContent = ms.length === 1 ? `Delete ${nameOf(ms[0])}?` : `Delete ${ms.length} mappings?`;
    $('#confirm-text').textContent = ms.length === 1
      ? `The router will stop forwarding external port ${ms[0].external_port}/${ms[0].protocol} to ${ms[0].internal_client}:${ms[0].internal_port}.`
      : `The router will stop forwarding ${ms.map(nameOf).join(', ')}.`;
    $('#confirm-dialog').showModal();
    $('#confirm-cancel').focus();
  }

  async function doDelete(ev) {
    ev.preventDefault();
    $('#confirm-dialog').close();
    const ms = toDelete;
    toDelete = [];
    try {
      if (ms.length === 1) {
        const m = ms[0];
        const path = `/api/mappings/${m.protocol.toLowerCase()}/${m.external_port}` + (m.remote_host ? `?remote=${encodeURIComponent(m.remote_host)}` : '');
        await api('DELETE', path, undefined, `Deleting ${nameOf(m)}…`);
        toast(`Deleted ${nameOf(m)}.`);
      } else {
        const body = { mappings: ms.map((m) => ({ protocol: m.protocol, external_port: m.external_port, remote_host: m.remote_host || '' })) };
        const res = await api('POST', '/api/mappings/delete', body, `Deleting ${ms.length} mappings…`);
        toast(`Deleted ${res.count} mapping${res.count === 1 ? '' : 's'}.`);
      }
      for (const m of ms) state.picked.delete(keyOf(m));
    } catch (e) {
      let text = e.message;
      if (e.body && e.body.failed) {
        text += ' ' + e.body.failed.map((f) => `${f.external_port}/${f.protocol}: ${f.error}`).join(' ');
      }
      notice(text);
    }
    loadMappings();
  }

  // ---- keep open, check ---------------------------------------------------

  async function setKeep(m, box) {
    const want = box.checked;
    box.disabled = true;
    try {
      await api('PUT', `/api/mappings/${m.protocol.toLowerCase()}/${m.external_port}/keep`, { keep: want },
        want ? `Keeping ${nameOf(m)} open…` : `Releasing ${nameOf(m)}…`);
      m.kept = want;
      toast(want ? `${nameOf(m)} will be kept open.` : `${nameOf(m)} is no longer kept open.`);
    } catch (e) {
      box.checked = !want;
      notice(e.message);
    } finally {
      box.disabled = false;
    }
  }

  async function check(m, button) {
    button.disabled = true;
    try {
      const res = await api('POST', `/api/mappings/${m.protocol.toLowerCase()}/${m.external_port}/check`, undefined, `Checking ${nameOf(m)}…`);
      const text = `${nameOf(m)}: ${res.summary || JSON.stringify(res.result)}`;
      // A port found unreachable stays on screen with its diagnosis.
      if (res.result && res.result.reachable === false) notice(text);
      else toast(text);
    } catch (e) {
      notice(`${nameOf(m)}: ${e.message}`);
    } finally {
      button.disabled = false;
    }
  }

  // ---- live updates -------------------------------------------------------

  function connect() {
    listen({ discovery: onDiscovery, gateways: onGateways, mappings: onMappings, external: onExternal },
      () => notice('Live updates stopped: portfwd ui may have been stopped, or this page is from an earlier run. Open the address it printed.'));
  }

  // ---- wiring -------------------------------------------------------------

  $('#notice-close').addEventListener('click', clearNotice);
  $('#discover').addEventListener('click', discover);
  $('#gateway').addEventListener('change', (ev) => selectGateway(ev.target.value));
  $('#more').addEventListener('toggle', () => { if ($('#more').open && state.selected) loadInfo(); });
  $('#add').addEventListener('click', () => openForm(null));
  $('#refresh').addEventListener('click', loadMappings);
  $('#delete-selected').addEventListener('click', () => {
    const ms = (state.table ? state.table.mappings : []).filter((m) => state.picked.has(keyOf(m)));
    confirmDelete(ms);
  });
  $('#select-all').addEventListener('change', (ev) => {
    state.picked.clear();
    if (ev.target.checked && state.table) for (const m of state.table.mappings) state.picked.add(keyOf(m));
    render();
  });
  for (const th of document.querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const key = th.dataset.sort;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      render();
    });
  }
  $('#edit-form').addEventListener('submit', submitForm);
  $('#edit-cancel').addEventListener('click', () => form.dialog.close());
  $('#confirm-form').addEventListener('submit', doDelete);
  $('#confirm-cancel').addEventListener('click', () => $('#confirm-dialog').close());

  setInterval(tick, 1000);
  // Ask for the state first, then listen: every event is then newer than
  // the answer. (The stream also starts with the state; asking makes the
  // page work where event streams are blocked.)
  api('GET', '/api/gateways', undefined, 'Looking for gateways…')
    .then(onGateways, (e) => notice(e.message))
    .finally(connect);
})();
