/* explaind dashboard: one page over the public API (docs/API.md), vanilla JS, no build step.
 *
 *   GET  /v1/models              model picker
 *   GET  /v1/models/{m}          labels, input spec, layers, methods (family + one-line summary)
 *   POST /v1/models/{m}/explain  multipart/form-data: the image file as field `image`, every other
 *                                parameter a form field. Multipart, not JSON base64: the file goes
 *                                as is (no +33 % base64), pasted/dropped images are Blobs already,
 *                                and a form POST with no Authorization header needs no CORS
 *                                preflight.
 *
 * The API base is the page's own server, or ?api=http://host:port (that server must list this
 * page's origin in cors_origins). An optional Bearer key is kept in sessionStorage under the API
 * base's origin, so a key typed for one server is never sent to another.
 *
 * Overlay opacity: the server's overlay is (1 - alpha) * image + alpha * heatmap (server/render.c).
 * The page re-blends that on a canvas from the uploaded image and the heatmap PNG when the slider
 * moves, instead of re-requesting: re-requesting would recompute every method and the sanity checks
 * (seconds for IG and the cascade), for a change that is pure compositing.
 *
 * Everything from the server reaches the DOM through textContent / attributes, never innerHTML. */
'use strict';

(() => {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const FAMILIES = [
    ['gradient', 'Gradient'],
    ['cam', 'Class activation maps'],
    ['combined', 'Combined'],
    ['perturbation', 'Perturbation'],
    ['internals', 'Model internals'],
    ['baseline', 'Baseline'],
  ];
  const DISPLAY = {
    saliency: 'Saliency', grad_x_input: 'Gradient × Input', integrated_gradients: 'Integrated Gradients',
    smoothgrad: 'SmoothGrad', guided_backprop: 'Guided Backprop', deconvnet: 'DeconvNet', cam: 'CAM',
    gradcam: 'Grad-CAM', gradcam_pp: 'Grad-CAM++', xgradcam: 'XGrad-CAM', layercam: 'LayerCAM',
    scorecam: 'Score-CAM', eigencam: 'Eigen-CAM', guided_gradcam: 'Guided Grad-CAM', occlusion: 'Occlusion',
    activations: 'Activations', attention: 'Attention', edge: 'Edge detector',
  };
  const DEFAULT_METHODS = ['saliency', 'integrated_gradients', 'gradcam'];
  /* API defaults (docs/API.md): a parameter equal to its default is not sent, which keeps the
   * request (and the curl line shown) short. */
  const DEFAULTS = {
    target: '', top_k: '5', ig_steps: '50', smoothgrad_samples: '25', smoothgrad_noise: '0.15',
    colormap: 'jet', alpha: '0.5', layer: '', seed: '0', baseline: 'zero', ig_method: 'gausslegendre',
    smoothgrad_type: 'smoothgrad', smoothgrad_base: 'saliency', size: 'input', clip_percentile: '99.5',
  };
  const SANITY_DEFAULTS = {
    sanity_order: 'cascading_top_down', sanity_init: 'default', sanity_target: 'fixed',
  };
  const FASHION = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
    'Ankle boot'];
  /* Line colours: each at least 3:1 against white (WCAG 1.4.11); lines also differ by marker shape. */
  const PALETTE = ['#0a6bb8', '#c24a00', '#0b7a55', '#8e44ad', '#b0136a', '#946200', '#3d4b5c', '#00778a'];
  const SHAPES = ['circle', 'square', 'triangle', 'diamond', 'down', 'cross'];
  const METRICS = [
    ['spearman_abs', 'Spearman (abs)', 'Spearman rank correlation of the absolute maps'],
    ['spearman', 'Spearman', 'Spearman rank correlation of the signed maps'],
    ['ssim', 'SSIM', 'structural similarity (SSIM)'],
    ['hog', 'HOG', 'similarity of histograms of oriented gradients (HOG)'],
  ];
  const PHASES = [
    ['decode', '#6c7a96'], ['preprocess', '#a0aec4'], ['forward', '#0a6bb8'], ['explain', '#0b7a55'],
    ['sanity', '#c24a00'], ['encode', '#8e44ad'],
  ];

  const state = {
    base: '', key: '', models: [], info: null,
    image: null, imageName: '', imageUrl: '', imageEl: null,
    busy: null, timer: 0, result: null, requestAlpha: 0.5, requestParams: null,
    metric: 'spearman_abs', downloadUrl: '', sprite: null,
  };

  /* ---- small DOM helpers ------------------------------------------------------------------ */
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  function build(ns, tag, attrs, kids) {
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class' && !ns) el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const h = (tag, attrs, ...kids) => build(null, tag, attrs, kids);
  const s = (tag, attrs, ...kids) => build(SVGNS, tag, attrs, kids);

  const fmt = (v, d = 3) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—');
  const fmtMs = (v) => (typeof v !== 'number' ? '—' : v >= 1000 ? (v / 1000).toFixed(2) + ' s'
    : v >= 10 ? v.toFixed(0) + ' ms' : v.toFixed(2) + ' ms');
  const fmtPct = (v) => (v * 100).toFixed(v >= 0.995 || v < 0.1 ? 1 : 1) + '%';
  const display = (m) => DISPLAY[m] || m;
  const fmtCount = (n) => (n >= 1e9 ? (n / 1e9).toFixed(2) + ' G' : n >= 1e6 ? (n / 1e6).toFixed(2) + ' M'
    : n >= 1e3 ? (n / 1e3).toFixed(1) + ' k' : String(n));

  /* ---- API access ------------------------------------------------------------------------- */
  class ApiError extends Error {
    constructor({ status, title, detail, requestId, retryAfter, network }) {
      super(detail);
      Object.assign(this, { status, title, detail, requestId, retryAfter, network });
    }
  }

  function apiUrl(path) { return (state.base || '') + path; }
  function baseLabel() { return state.base || location.origin; }

  async function api(path, { method = 'GET', body, signal } = {}) {
    const headers = { Accept: 'application/json, application/problem+json' };
    if (state.key) headers.Authorization = 'Bearer ' + state.key;
    let res;
    try {
      res = await fetch(apiUrl(path), { method, body, headers, signal, mode: 'cors', credentials: 'omit' });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      /* fetch() rejects alike when the server is down and when CORS blocks the answer */
      const crossOrigin = !!state.base && new URL(state.base).origin !== location.origin;
      throw new ApiError({
        status: 0, network: true, title: 'Network error',
        detail: `Could not reach the explaind API at ${baseLabel()} (${e && e.message ? e.message : e}). ` +
          (crossOrigin
            ? `The server may be down, or it does not allow this page's origin ${location.origin}: ` +
              'add it to the server\'s cors_origins (EXPLAIND_CORS_ORIGINS).'
            : 'The server may be down or restarting.'),
      });
    }
    const text = await res.text();
    const ctype = res.headers.get('Content-Type') || '';
    let doc = null;
    if (ctype.includes('json')) {
      try { doc = JSON.parse(text); } catch (e) { doc = null; }
    }
    if (!res.ok) {
      throw new ApiError({
        status: res.status,
        title: (doc && doc.title) || res.statusText || 'HTTP error',
        detail: (doc && doc.detail) || text.slice(0, 400) || `HTTP ${res.status} with an empty body`,
        requestId: (doc && doc.request_id) || res.headers.get('X-Request-Id'),
        retryAfter: res.headers.get('Retry-After'),
      });
    }
    if (!doc) {
      throw new ApiError({ status: res.status, title: 'Unexpected response',
        detail: `expected JSON from ${path}, got ${ctype || 'no Content-Type'}`,
        requestId: res.headers.get('X-Request-Id') });
    }
    return { doc, text };
  }

  function errorHint(e) {
    if (e.status === 401) return 'This server requires an API key: open Connection (top right) and enter it.';
    if (e.status === 503) return `The server is busy or draining${e.retryAfter ? `; retry in ${e.retryAfter} s` : ''}.`;
    if (e.status === 504) return 'The request ran past the server\'s request_timeout_ms: try fewer methods, fewer IG '
      + 'steps or SmoothGrad samples, or fewer sanity checks.';
    if (e.status === 413) return 'The image is larger than the server accepts (max_upload_bytes / max_pixels).';
    return '';
  }

  /* ---- connection ------------------------------------------------------------------------- */
  function originOf(base) {
    try { return new URL(base || location.href).origin; } catch (e) { return location.origin; }
  }
  const keySlot = () => 'explaind.api_key ' + originOf(state.base);

  function initialBase() {
    const q = new URLSearchParams(location.search).get('api');
    const stored = sessionStorage.getItem('explaind.api_base') || '';
    return normalizeBase(q !== null ? q : stored);
  }

  function normalizeBase(v) {
    v = (v || '').trim();
    if (!v) return '';
    const u = new URL(v, location.href); /* throws on garbage */
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('the API base must be http(s)');
    return (u.origin + u.pathname).replace(/\/+$/, '');
  }

  function setConn(stateName, text) {
    const el = $('#conn-status');
    el.dataset.state = stateName;
    el.textContent = text;
  }

  function showBanner(e) {
    const b = $('#banner');
    b.replaceChildren(...[
      h('strong', { text: e.status ? `${e.status} ${e.title}: ` : `${e.title || 'Error'}: ` }),
      document.createTextNode(e.detail || String(e)),
      errorHint(e) ? h('span', { text: ' ' + errorHint(e) }) : null,
      e.status === 401 ? h('button', { type: 'button', class: 'btn btn-small', style: 'margin-left:10px',
        text: 'Enter API key', onclick: openKeyField }) : null,
    ].filter(Boolean));
    b.hidden = false;
  }

  function openKeyField() {
    $('#conn').open = true;
    fillConnForm();
    $('#api-key').focus();
  }

  function fillConnForm() {
    $('#api-base').value = state.base;
    $('#api-key').value = state.key;
  }

  function updateFooterLinks() {
    $('#link-openapi').href = apiUrl('/openapi.yaml');
    $('#link-metrics').href = apiUrl('/metrics');
    $('#link-ready').href = apiUrl('/readyz');
  }

  async function connect() {
    setConn('pending', 'Connecting…');
    $('#banner').hidden = true;
    updateFooterLinks();
    const sel = $('#model');
    sel.disabled = true;
    $('#run').disabled = true;
    try {
      const { doc } = await api('/v1/models');
      state.models = doc.models || [];
      const n = state.models.length;
      setConn('ok', `${n} model${n === 1 ? '' : 's'} · ${state.base ? originOf(state.base) : 'this server'}`);
      if (!n) {
        sel.replaceChildren(h('option', { text: 'No models loaded' }));
        $('#methods').replaceChildren(h('p', { class: 'hint', text: 'The server has no models (models_dir is empty).' }));
        return;
      }
      const want = new URLSearchParams(location.search).get('model');
      const names = state.models.map((m) => m.name);
      const pick = names.includes(want) ? want : names.includes('fashion-cnn') ? 'fashion-cnn' : names[0];
      sel.replaceChildren(...state.models.map((m) => h('option', { value: m.name, text: m.name,
        selected: m.name === pick })));
      sel.disabled = false;
      await selectModel(pick);
    } catch (e) {
      setConn('error', 'Not connected');
      sel.replaceChildren(h('option', { text: 'No connection' }));
      $('#methods').replaceChildren(h('p', { class: 'hint', text: 'Methods appear once the API answers.' }));
      showBanner(e);
    }
  }

  /* ---- model ------------------------------------------------------------------------------ */
  async function selectModel(name) {
    $('#run').disabled = true;
    $('#model-info').replaceChildren(h('p', { class: 'hint', text: 'Loading…' }));
    let info;
    try {
      info = (await api('/v1/models/' + encodeURIComponent(name))).doc;
    } catch (e) {
      $('#model-info').replaceChildren();
      showBanner(e);
      return;
    }
    $('#banner').hidden = true;
    state.info = info;
    renderModelInfo(info);
    renderMethods(info);
    fillTargets(info);
    fillLayers(info);
    const twin = info.label_randomized_twin;
    $('#twin-hint').textContent = twin ? `Twin: ${twin}.` : 'This model has no twin: the check will say unavailable.';
    $('#samples').hidden = !(Array.isArray(info.labels) && info.labels.join('|') === FASHION.join('|'));
    $('#top_k').max = String(info.classes || 1000);
    $('#run').disabled = false;
  }

  function renderModelInfo(info) {
    const inp = info.input || {};
    const gray = inp.color === 'gray';
    const ch = gray ? 1 : 3;
    const mean = (info.input_mean || []).slice(0, ch).map((v) => +v.toFixed(3)).join(', ');
    const std = (info.input_std || []).slice(0, ch).map((v) => +v.toFixed(3)).join(', ');
    const rows = [
      ['Input', `${inp.width}×${inp.height} ${inp.color}, resize ${inp.resize}`],
      ['Normalize', `mean ${mean} · std ${std}`],
      ['Size', `${fmtCount(info.parameters)} parameters · ${fmtCount(info.flops_per_image || 0)}FLOPs/image`],
      ['CAM layer', info.cam_layer || 'none'],
      ['Twin', info.label_randomized_twin || 'none (no label-randomization check)'],
    ];
    if ((info.attention_layers || []).length) rows.push(['Attention', info.attention_layers.join(', ')]);
    const labels = info.labels || [];
    const chips = labels.length <= 40
      ? h('div', { class: 'chips', 'aria-label': `${labels.length} classes` },
        labels.map((l, i) => h('span', { class: 'chip' }, h('span', { class: 'idx', text: i }), l)))
      : h('p', { class: 'hint', text: `${labels.length} classes: ${labels.slice(0, 12).join(', ')}, …` });
    $('#model-info').replaceChildren(
      h('dl', { class: 'kv' }, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])),
      chips,
    );
  }

  function renderMethods(info) {
    const box = $('#methods');
    const before = new Set($$('input[name="methods"]:checked', box).map((c) => c.value));
    const keep = before.size ? before : new Set(DEFAULT_METHODS);
    const hasAttention = (info.attention_layers || []).length > 0;
    const groups = [];
    for (const [fam, title] of FAMILIES) {
      const ms = (info.methods || []).filter((m) => m.family === fam);
      if (!ms.length) continue;
      groups.push(h('fieldset', { class: 'family' },
        h('legend', { text: title }),
        ms.map((m) => {
          const id = 'm-' + m.name;
          const off = m.name === 'attention' && !hasAttention;
          return h('div', { class: 'check', 'data-disabled': off || null },
            h('input', { type: 'checkbox', id, name: 'methods', value: m.name, checked: keep.has(m.name) && !off,
              disabled: off, 'aria-describedby': id + '-d' }),
            h('label', { for: id }, display(m.name), h('code', { text: m.name })),
            h('p', { class: 'hint', id: id + '-d',
              text: off ? 'Not available: this model declares no attention layers.' : m.summary }));
        })));
    }
    /* methods a newer server knows and this page does not group */
    const known = new Set(FAMILIES.map((f) => f[0]));
    const other = (info.methods || []).filter((m) => !known.has(m.family));
    if (other.length) {
      groups.push(h('fieldset', { class: 'family' }, h('legend', { text: 'Other' }),
        other.map((m) => h('div', { class: 'check' },
          h('input', { type: 'checkbox', id: 'm-' + m.name, name: 'methods', value: m.name,
            'aria-describedby': 'm-' + m.name + '-d' }),
          h('label', { for: 'm-' + m.name }, display(m.name), h('code', { text: m.name })),
          h('p', { class: 'hint', id: 'm-' + m.name + '-d', text: m.summary || '' })))));
    }
    box.replaceChildren(...groups);
  }

  function fillTargets(info) {
    const sel = $('#target');
    const prev = sel.value;
    sel.replaceChildren(h('option', { value: '', text: 'Top prediction' }),
      (info.labels || []).map((l, i) => h('option', { value: String(i), text: `${i} · ${l}` })));
    if ([...sel.options].some((o) => o.value === prev)) sel.value = prev;
  }

  function fillLayers(info) {
    /* CAM-able layers: 4-D values (C, H, W after the batch dimension) */
    const layers = (info.layers || []).filter((l) => Array.isArray(l.shape) && l.shape.length === 3);
    const sel = $('#layer');
    sel.replaceChildren(h('option', { value: '', text: `Model default (${info.cam_layer || 'auto'})` }),
      layers.map((l) => h('option', { value: l.name, text: `${l.name}  [${l.shape.join('×')}]` })));
    const params = (info.layers || []).filter((l) => l.parameters > 0);
    $('#layer-names').replaceChildren(...params.map((l) => h('option', { value: l.name })));
  }

  /* ---- image input ------------------------------------------------------------------------ */
  async function setImage(blob, name) {
    const meta = $('#file-meta');
    let img;
    try {
      img = await loadImage(blob);
    } catch (e) {
      meta.textContent = `${name}: the browser cannot read this file as an image.`;
      return;
    }
    let send = blob;
    let note = '';
    if (blob.type !== 'image/png' && blob.type !== 'image/jpeg') {
      /* explaind decodes PNG and JPEG; anything else the browser can show is converted */
      const c = h('canvas', { width: img.naturalWidth, height: img.naturalHeight });
      c.getContext('2d').drawImage(img, 0, 0);
      send = await new Promise((resolve) => c.toBlob(resolve, 'image/png'));
      name = name.replace(/\.[a-z0-9]+$/i, '') + '.png';
      note = ' · converted to PNG';
      img = await loadImage(send);
    }
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.image = send;
    state.imageName = name || 'image.png';
    state.imageUrl = img.src;
    state.imageEl = img;
    const pv = $('#preview');
    pv.src = img.src;
    pv.alt = `Selected image ${state.imageName}`;
    pv.classList.toggle('pixelated', img.naturalWidth < 96);
    pv.hidden = false;
    $('#drop').dataset.state = 'full';
    meta.replaceChildren(h('b', { text: state.imageName }),
      ` · ${img.naturalWidth}×${img.naturalHeight} · ${(send.size / 1024).toFixed(1)} KB${note}`);
  }

  function loadImage(blob) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error('not an image'));
      img.src = URL.createObjectURL(blob);
    });
  }

  function setupImageInput() {
    $('#file').addEventListener('change', (e) => {
      const f = e.target.files && e.target.files[0];
      if (f) { clearSamplePressed(); setImage(f, f.name); }
    });
    const drop = $('#drop');
    let depth = 0;
    document.addEventListener('dragenter', (e) => {
      if (![...(e.dataTransfer ? e.dataTransfer.types : [])].includes('Files')) return;
      depth++;
      drop.dataset.state = 'over';
    });
    document.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) drop.dataset.state = state.image ? 'full' : 'empty';
    });
    document.addEventListener('dragover', (e) => { e.preventDefault(); });
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      drop.dataset.state = state.image ? 'full' : 'empty';
      const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (f) { clearSamplePressed(); setImage(f, f.name); }
    });
    document.addEventListener('paste', (e) => {
      const items = e.clipboardData ? [...e.clipboardData.items] : [];
      const it = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
      if (!it) return; /* text pastes go to the focused field as usual */
      e.preventDefault();
      const f = it.getAsFile();
      clearSamplePressed();
      setImage(f, f.name && f.name !== 'image.png' ? f.name : `pasted.${(f.type.split('/')[1] || 'png')}`);
    });
    /* samples: web/fashion-samples.png holds the first test image of each class, 28 px apart */
    const row = $('.sample-row');
    FASHION.forEach((label, k) => {
      row.append(h('button', {
        type: 'button', class: 'sample', 'aria-label': `Sample: ${label}`, title: label, 'aria-pressed': 'false',
        style: `background-image:url("fashion-samples.png");background-position:${-30 * k}px 0`,
        onclick: (e) => useSample(k, label, e.currentTarget),
      }));
    });
  }

  function clearSamplePressed() { $$('.sample').forEach((b) => b.setAttribute('aria-pressed', 'false')); }

  async function useSample(k, label, btn) {
    if (!state.sprite) state.sprite = await new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error('fashion-samples.png did not load'));
      img.src = 'fashion-samples.png';
    });
    const c = h('canvas', { width: 28, height: 28 });
    c.getContext('2d').drawImage(state.sprite, 28 * k, 0, 28, 28, 0, 0, 28, 28);
    const blob = await new Promise((resolve) => c.toBlob(resolve, 'image/png'));
    clearSamplePressed();
    btn.setAttribute('aria-pressed', 'true');
    await setImage(blob, `fashion-mnist-${label.toLowerCase().replace(/[^a-z]+/g, '-')}.png`);
  }

  /* ---- request ---------------------------------------------------------------------------- */
  function collectParams() {
    const p = [];
    const methods = $$('input[name="methods"]:checked').map((c) => c.value);
    p.push(['methods', methods.join(',')]);
    for (const [name, def] of Object.entries(DEFAULTS)) {
      const el = document.getElementById(name);
      const v = String(el.value).trim();
      if (v !== '' && v !== def && !(el.type === 'number' && Number(v) === Number(def))) p.push([name, v]);
    }
    const sanity = $$('input[name="sanity"]:checked').map((c) => c.value);
    if (sanity.length) {
      p.push(['sanity', sanity.join(',')]);
      for (const [name, def] of Object.entries(SANITY_DEFAULTS)) {
        const v = document.getElementById(name).value;
        if (v !== def) p.push([name, v]);
      }
      const mode = $('#sanity_layers_mode').value;
      if (mode === 'blocks') p.push(['sanity_layers', 'blocks']);
      if (mode === 'list' && $('#sanity_layers_list').value.trim()) {
        p.push(['sanity_layers', $('#sanity_layers_list').value.split(',').map((x) => x.trim()).filter(Boolean).join(',')]);
      }
    }
    return p;
  }

  function shellQuote(v) { return /^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`; }

  function curlLine(params, model) {
    const lines = [`curl -F image=@${shellQuote(state.imageName)}`];
    for (const [k, v] of params) lines.push(`  -F ${shellQuote(`${k}=${v}`)}`);
    if (state.key) lines.push('  -H "Authorization: Bearer $EXPLAIND_API_KEY"');
    lines.push(`  ${shellQuote(`${baseLabel()}/v1/models/${model}/explain`)}`);
    return lines.join(' \\\n');
  }

  function setRunStatus(text, st) {
    const el = $('#run-status');
    el.textContent = text;
    if (st) el.dataset.state = st; else delete el.dataset.state;
  }

  function showError(e) {
    const box = $('#error');
    const hint = errorHint(e);
    /* a 422 names the parameter first ("ig_steps must be ..."): mark that field and offer to go there */
    const name = e.status === 422 && /^([a-z_]+)\b/.exec(e.detail || '');
    const field = name && document.getElementById(name[1]);
    const bad = field && field.form === $('#form') ? field : null;
    if (bad) bad.setAttribute('aria-invalid', 'true');
    box.replaceChildren(...[
      h('h3', { text: e.status ? `${e.status} ${e.title}` : e.title || 'Error' }),
      h('p', { class: 'detail', text: e.detail || String(e) }),
      hint ? h('p', { text: hint }) : null,
      bad ? h('p', {}, h('button', { type: 'button', class: 'btn btn-small', text: `Go to ${name[1]}`,
        onclick: () => { const d = bad.closest('details'); if (d) d.open = true; bad.focus(); } })) : null,
      e.requestId ? h('p', { class: 'rid', text: `request id ${e.requestId}` }) : null,
    ].filter(Boolean));
    box.hidden = false;
    $('#empty').hidden = true;
  }

  async function runExplain(ev) {
    ev.preventDefault();
    if (state.busy) return;
    $('#error').hidden = true;
    $$('#form [aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    if (!state.info) return;
    if (!state.image) {
      setRunStatus('Choose an image first.', 'error');
      $('#file').focus();
      return;
    }
    const params = collectParams();
    if (!params[0][1]) {
      setRunStatus('Tick at least one method.', 'error');
      const first = $('input[name="methods"]:not(:disabled)');
      if (first) first.focus();
      return;
    }
    const model = state.info.name;
    const fd = new FormData();
    fd.append('image', state.image, state.imageName);
    for (const [k, v] of params) fd.append(k, v);
    const ctl = new AbortController();
    state.busy = ctl;
    $('#run').disabled = true;
    $('#cancel').hidden = false;
    const t0 = performance.now();
    setRunStatus('Running…', 'busy');
    state.timer = setInterval(() => {
      setRunStatus(`Running… ${((performance.now() - t0) / 1000).toFixed(1)} s`, 'busy');
    }, 200);
    try {
      const { doc, text } = await api(`/v1/models/${encodeURIComponent(model)}/explain`,
        { method: 'POST', body: fd, signal: ctl.signal });
      const alpha = params.find((p) => p[0] === 'alpha');
      state.requestAlpha = alpha ? Number(alpha[1]) : 0.5;
      state.requestParams = params;
      await renderResult(doc, text, params, model);
      setRunStatus(`Done in ${((performance.now() - t0) / 1000).toFixed(2)} s.`, 'ok');
    } catch (e) {
      if (e && e.name === 'AbortError') {
        setRunStatus('Cancelled.');
      } else if (e instanceof ApiError) {
        showError(e);
        setRunStatus(`Failed${e.status ? ` (${e.status})` : ''}: ${e.detail}`, 'error');
      } else {
        showError(new ApiError({ status: 0, title: 'Could not show the result', detail: String(e && e.message || e) }));
        setRunStatus('Failed: could not show the result.', 'error');
        console.error(e);
      }
    } finally {
      clearInterval(state.timer);
      state.busy = null;
      $('#run').disabled = false;
      $('#cancel').hidden = true;
    }
  }

  /* ---- results ---------------------------------------------------------------------------- */
  async function renderResult(doc, text, params, model) {
    state.result = doc;
    if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
    state.downloadUrl = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    const order = (params.find((p) => p[0] === 'methods') || ['', ''])[1].split(',')
      .filter((m) => doc.explanations && doc.explanations[m]);
    for (const m of Object.keys(doc.explanations || {})) if (!order.includes(m)) order.push(m);

    const parts = [summaryCard(doc, params, model), h('div', { class: 'two-col' }, predictionsCard(doc), timingCard(doc)),
      explanationsCard(doc, order, params)];
    const sn = doc.sanity || {};
    if (sn.model_randomization) parts.push(modelRandCard(sn.model_randomization, order));
    const pair = [sn.label_randomization ? labelRandCard(sn.label_randomization, order) : null,
      sn.random_logit ? randomLogitCard(sn.random_logit, order, doc) : null].filter(Boolean);
    parts.push(...pair);
    const out = $('#out');
    out.replaceChildren(...parts);
    out.hidden = false;
    $('#empty').hidden = true;
    await Promise.all($$('img', out).map((img) => img.decode().catch(() => {})));
  }

  function card(title, sub, ...body) {
    return h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h3', { text: title }), sub ? h('span', { class: 'sub', text: sub }) : null),
      h('div', { class: 'card-body' }, ...body));
  }

  function summaryCard(doc, params, model) {
    const top = (doc.predictions || [])[0];
    const tgt = doc.target || {};
    const inp = doc.input || {};
    const img = h('img', { class: 'input-img', src: state.imageUrl, alt: `Input image ${state.imageName}` });
    if (state.imageEl && state.imageEl.naturalWidth < 96) img.classList.add('pixelated');
    return h('section', { class: 'card summary', 'aria-label': 'Summary' },
      img,
      h('div', { class: 'summary-main' },
        h('p', { class: 'verdict-line', id: 'top-class' },
          top ? top.label : '—', top ? h('span', { class: 'score', text: `${fmtPct(top.score)} confidence` }) : null),
        h('ul', { class: 'meta' },
          h('li', {}, 'Explaining ', h('b', { text: `${tgt.label} (#${tgt.index})` }),
            top && tgt.index !== top.index ? ' (not the top class)' : ''),
          h('li', {}, 'Model ', h('b', { text: model })),
          h('li', {}, 'Image ', h('b', { text: `${inp.width}×${inp.height} ${inp.format || ''}` })),
          h('li', {}, 'Total ', h('b', { text: fmtMs(doc.timing_ms && doc.timing_ms.total) })),
          h('li', {}, 'Request ', h('b', { class: 'mono', text: doc.request_id || '—' }))),
        h('div', { class: 'actions' },
          h('a', { class: 'btn btn-small btn-quiet', href: state.downloadUrl, download: `explain-${doc.request_id || 'result'}.json`,
            text: 'Download JSON' }),
          h('details', { class: 'numbers' },
            h('summary', { text: 'Same request with curl' }),
            h('pre', { class: 'curl', tabindex: '0', 'aria-label': 'curl command', text: curlLine(params, model) })))));
  }

  function predictionsCard(doc) {
    const preds = doc.predictions || [];
    const tgt = doc.target || {};
    const max = Math.max(...preds.map((p) => p.score), 1e-9);
    const n = state.info && state.info.classes;
    return card('Predictions', `top ${preds.length}${n ? ` of ${n}` : ''} · softmax`,
      h('ol', { class: 'preds', id: 'preds', 'aria-label': 'Class scores, highest first' },
        preds.map((p) => h('li', { class: 'pred', 'data-index': p.index, 'data-label': p.label,
          title: `logit ${fmt(p.logit, 4)}` },
          h('span', { class: 'pred-label' }, h('span', { class: 'idx', text: p.index }), p.label,
            p.index === tgt.index ? h('span', { class: 'tag', text: 'explained' }) : null),
          h('span', { class: 'pred-track', 'aria-hidden': 'true' },
            h('span', { class: 'pred-bar', style: `display:block;width:${(100 * p.score / max).toFixed(2)}%` })),
          h('span', { class: 'pred-value', text: fmtPct(p.score) })))));
  }

  function timingCard(doc) {
    const t = doc.timing_ms || {};
    const total = t.total || PHASES.reduce((a, [k]) => a + (t[k] || 0), 0) || 1;
    const pa = doc.passes || {};
    const sp = (doc.sanity && doc.sanity.passes) || null;
    return card('Timing', `total ${fmtMs(t.total)}`,
      h('div', { class: 'tbar', role: 'img', 'aria-label': 'Time per phase: ' +
        PHASES.map(([k]) => `${k} ${fmtMs(t[k] || 0)}`).join(', ') },
        PHASES.map(([k, c]) => (t[k] ? h('span', { style: `width:${(100 * t[k] / total).toFixed(2)}%;background:${c}`,
          title: `${k} ${fmtMs(t[k])}` }) : null))),
      h('ul', { class: 'tlegend' }, PHASES.map(([k, c]) => h('li', {},
        h('i', { style: `background:${c}`, 'aria-hidden': 'true' }), k, h('span', { class: 'v', text: fmtMs(t[k] || 0) })))),
      h('p', { class: 'passes' }, 'Engine passes for the explanations: ',
        h('b', { text: `${pa.forward ?? '—'} forward` }), ', ', h('b', { text: `${pa.backward ?? '—'} backward` }),
        sp ? [' · for the sanity checks: ', h('b', { text: `${sp.forward} forward` }), ', ',
          h('b', { text: `${sp.backward} backward` })] : null,
        '. Methods that share passes are fused.'));
  }

  /* -- explanations -- */
  function explanationsCard(doc, order, params) {
    const cmap = (params.find((p) => p[0] === 'colormap') || [0, 'jet'])[1];
    const clip = (params.find((p) => p[0] === 'clip_percentile') || [0, '99.5'])[1];
    const slider = h('input', { type: 'range', id: 'view-alpha', min: '0', max: '1', step: '0.05',
      value: String(state.requestAlpha), 'aria-describedby': 'view-alpha-d' });
    const out = h('output', { for: 'view-alpha', id: 'view-alpha-out', text: state.requestAlpha.toFixed(2) });
    slider.addEventListener('input', () => {
      const a = Number(slider.value);
      out.textContent = a.toFixed(2);
      $('#alpha').value = slider.value; /* the next request asks for this opacity too */
      $('#alpha-out').textContent = a.toFixed(2);
      reblend(a);
    });
    const sn = doc.sanity || {};
    return h('section', { class: 'card', 'aria-labelledby': 'h-expl' },
      h('div', { class: 'card-head' }, h('h3', { id: 'h-expl', text: 'Explanations' }),
        h('span', { class: 'sub', text: `${order.length} method${order.length === 1 ? '' : 's'} · target ${doc.target ? doc.target.label : ''}` })),
      h('div', { class: 'xtool' },
        h('div', { class: 'field' }, h('label', { for: 'view-alpha' }, 'Overlay opacity ', out), slider),
        h('p', { id: 'view-alpha-d', class: 'hint', style: 'margin:0' }, 'Re-blended in the browser; no new request.'),
        h('div', { class: 'legend-cmap' }, 'low', h('span', { class: 'cmap-bar', 'data-cmap': cmap, role: 'img',
          'aria-label': `${cmap} colormap, low to high` }), `high · each map normalized, clipped at the ${clip}th percentile`)),
      h('div', { class: 'xgrid' }, order.map((m) => explanationCard(m, doc.explanations[m], sn))));
  }

  function familyOf(m) {
    const x = state.info && (state.info.methods || []).find((y) => y.name === m);
    return x ? x.family : '';
  }

  function explanationCard(m, x, sn) {
    const small = state.imageEl && state.imageEl.naturalWidth < 96;
    const figs = [];
    if (x.heatmap_png) {
      figs.push(h('figure', {},
        h('div', { class: 'map' }, h('img', { class: 'heatmap' + (small ? ' pixelated' : ''), alt: `${display(m)} heatmap`,
          src: 'data:image/png;base64,' + x.heatmap_png })),
        h('figcaption', { text: m === 'activations' ? 'feature maps' : 'heatmap' })));
    }
    if (x.overlay_png) {
      figs.push(h('figure', {},
        h('div', { class: 'map' },
          h('img', { class: 'overlay' + (small ? ' pixelated' : ''), alt: `${display(m)} heatmap over the input`,
            src: 'data:image/png;base64,' + x.overlay_png }),
          h('canvas', { class: 'reblend' + (small ? ' pixelated' : ''), hidden: true, role: 'img',
            'aria-label': `${display(m)} heatmap over the input` })),
        h('figcaption', { text: 'overlay' })));
    }
    const stats = x.stats || {};
    const extra = Object.entries(x.extra || {}).map(([k, v]) => h('li', {}, `${k.replace(/_/g, ' ')} `,
      h('b', { text: typeof v === 'number' ? +v.toPrecision(4) : String(v) })));
    const checks = [];
    const mr = sn.model_randomization && sn.model_randomization.methods && sn.model_randomization.methods[m];
    const lr = sn.label_randomization && sn.label_randomization.methods && sn.label_randomization.methods[m];
    const rl = sn.random_logit && sn.random_logit.methods && sn.random_logit.methods[m];
    if (mr) checks.push(mark(mr.passed, 'model', mr.verdict));
    if (lr) checks.push(mark(lr.passed, 'labels', lr.verdict));
    if (rl) checks.push(mark(rl.passed, 'random logit', rl.verdict));
    const fam = familyOf(m);
    return h('article', { class: 'xcard', 'data-method': m, 'aria-label': display(m) },
      h('div', { class: 'xcard-head' },
        h('h4', { title: display(m), text: display(m) }),
        fam ? h('span', { class: 'fam', text: fam }) : null),
      h('code', { class: 'xname', text: m }),
      h('div', { class: 'xfigs' + (figs.length === 1 ? ' single' : '') }, figs),
      h('ul', { class: 'xstats' },
        x.layer ? h('li', {}, 'layer ', h('b', { text: x.layer })) : null,
        h('li', {}, 'min ', h('b', { text: fmtG(stats.min) })),
        h('li', {}, 'max ', h('b', { text: fmtG(stats.max) })),
        h('li', {}, 'mean ', h('b', { text: fmtG(stats.mean) })),
        extra,
        h('li', {}, 'time ', h('b', { text: fmtMs(x.time_ms) }))),
      checks.length ? h('div', { class: 'xchecks', 'aria-label': 'Sanity checks' }, checks) : null);
  }

  const fmtG = (v) => (typeof v === 'number' ? (v === 0 ? '0' : Math.abs(v) >= 0.01 && Math.abs(v) < 1e4
    ? v.toFixed(3) : v.toExponential(2)) : '—');

  function mark(passed, what, title) {
    const [cls, icon, word] = passed === true ? ['mark-pass', '✓', 'passed'] : passed === false ? ['mark-fail', '✗', 'failed']
      : ['mark-null', '–', 'undecided'];
    return h('span', { class: `mark ${cls}`, title: title || null, 'data-passed': String(passed) },
      h('span', { 'aria-hidden': 'true', text: icon }), what ? `${what}: ${word}` : word);
  }

  async function reblend(alpha) {
    const base = state.imageEl;
    const same = Math.abs(alpha - state.requestAlpha) < 1e-6;
    const geometry = overlayGeometry();
    for (const card of $$('.xcard')) {
      const img = $('img.overlay', card);
      const heat = $('img.heatmap', card);
      const cv = $('canvas.reblend', card);
      if (!img || !heat || !cv) continue;
      if (same || !base || !geometry) { img.hidden = false; cv.hidden = true; continue; }
      try { await heat.decode(); } catch (e) { continue; }
      const w = heat.naturalWidth, hh = heat.naturalHeight;
      if (cv.width !== w) cv.width = w;
      if (cv.height !== hh) cv.height = hh;
      const ctx = cv.getContext('2d');
      ctx.globalAlpha = 1;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(base, ...geometry(base.naturalWidth, base.naturalHeight, w, hh));
      ctx.globalAlpha = alpha;
      ctx.drawImage(heat, 0, 0, w, hh);
      cv.hidden = false;
      img.hidden = true;
    }
  }

  /* Where the uploaded image lies under a heatmap: with size=input the heatmap covers the image; with
   * size=model it covers the model input, i.e. the image after the sidecar's resize. Letterbox pads
   * with a value the page does not know, so that case keeps the server's overlay. */
  function overlayGeometry() {
    const size = (state.requestParams || []).find((p) => p[0] === 'size');
    const resize = state.info && state.info.input ? state.info.input.resize : 'stretch';
    if (!size || size[1] === 'input' || resize === 'stretch') return (iw, ih, w, hh) => [0, 0, iw, ih, 0, 0, w, hh];
    if (resize === 'center_crop') {
      return (iw, ih, w, hh) => {
        const sc = Math.max(w / iw, hh / ih);
        const sw = w / sc, sh = hh / sc;
        return [(iw - sw) / 2, (ih - sh) / 2, sw, sh, 0, 0, w, hh];
      };
    }
    return null;
  }

  /* -- model randomization -- */
  function shortLayer(name) {
    // ONNX exporter names end in the op type ("/conv4/conv/Conv"): the path before it names the layer
    let v = String(name).replace(/^\//, '').replace(/\/[A-Z][A-Za-z]*$/, '');
    if (v.length > 20) { const parts = v.split('/'); if (parts.length > 2) v = parts.slice(-2).join('/'); }
    return v.length > 24 ? '…' + v.slice(-23) : v;
  }

  function stepLayer(mr, k) {
    const r = mr.steps[k] && mr.steps[k].randomized;
    return Array.isArray(r) && r.length ? r[r.length - 1] : `step ${k + 1}`;
  }

  function thresholdFor(criterion, metric) {
    const re = new RegExp(`(?:^|\\W)${metric}\\s*<\\s*(-?[0-9.]+)`);
    const mm = re.exec(criterion || '');
    return mm ? Number(mm[1]) : null;
  }

  function markerPath(shape, cx, cy, r) {
    switch (shape) {
      case 'square': return `M${cx - r} ${cy - r}h${2 * r}v${2 * r}h${-2 * r}z`;
      case 'triangle': return `M${cx} ${cy - r * 1.2}L${cx + r * 1.1} ${cy + r * 0.8}H${cx - r * 1.1}z`;
      case 'down': return `M${cx} ${cy + r * 1.2}L${cx + r * 1.1} ${cy - r * 0.8}H${cx - r * 1.1}z`;
      case 'diamond': return `M${cx} ${cy - r * 1.3}L${cx + r * 1.3} ${cy}L${cx} ${cy + r * 1.3}L${cx - r * 1.3} ${cy}z`;
      case 'cross': {
        const a = r * 0.45;
        return `M${cx - a} ${cy - r}h${2 * a}v${r - a}h${r - a}v${2 * a}h${a - r}v${r - a}h${-2 * a}v${a - r}h${a - r}v${-2 * a}h${r - a}z`;
      }
      default: return `M${cx - r} ${cy}a${r} ${r} 0 1 0 ${2 * r} 0a${r} ${r} 0 1 0 ${-2 * r} 0`;
    }
  }

  function randChart(mr, methods, metric) {
    const n = mr.steps.length;
    const W = 780, H = 370, ml = 58, mrg = 150, mt = 16, mb = 104;
    const pw = W - ml - mrg, ph = H - mt - mb;
    const vals = [];
    const floors = [];
    for (const m of methods) {
      for (const st of mr.methods[m].steps) if (Number.isFinite(st[metric])) vals.push(st[metric]);
      const f = mr.methods[m].floor;
      if (f && Number.isFinite(f[metric])) floors.push(f[metric]);
    }
    let lo = Math.min(0, ...vals, ...floors);
    lo = Math.max(-1, Math.floor(lo * 4 - 1e-9) / 4);
    const hi = 1;
    const x = (i) => ml + (n ? (i * pw) / n : 0);
    const y = (v) => mt + ((hi - v) / (hi - lo)) * ph;
    const metricName = METRICS.find((q) => q[0] === metric)[1];
    const svg = s('svg', { class: 'chart rand-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-metric': metric,
      'aria-label': `${metricName} between the original map and the map after each randomization step, ` +
        `one line per method (${methods.map(display).join(', ')}); the numbers are in the table below.` });
    const grid = s('g', { class: 'grid' });
    for (let t = lo; t <= hi + 1e-9; t += 0.25) {
      grid.append(s('line', { x1: ml, x2: ml + pw, y1: y(t), y2: y(t), style: Math.abs(t) < 1e-9 ? 'stroke:#aab3c2' : null }));
      svg.append(s('text', { x: ml - 8, y: y(t) + 4, 'text-anchor': 'end', text: t.toFixed(2) }));
    }
    svg.prepend(grid);
    svg.append(s('line', { class: 'axis', x1: ml, x2: ml, y1: mt, y2: mt + ph }));
    svg.append(s('line', { class: 'axis', x1: ml, x2: ml + pw, y1: mt + ph, y2: mt + ph }));
    const every = Math.max(1, Math.ceil((n + 1) / 22));
    for (let i = 0; i <= n; i++) {
      const full = i === 0 ? 'original' : stepLayer(mr, i - 1);
      svg.append(s('line', { class: 'axis', x1: x(i), x2: x(i), y1: mt + ph, y2: mt + ph + 5 }));
      if (i % every && i !== n) continue;
      svg.append(s('text', { x: x(i), y: mt + ph + 16, 'text-anchor': 'end', transform: `rotate(-35 ${x(i)} ${mt + ph + 16})`,
        style: i === 0 ? 'font-weight:600' : null }, s('title', { text: full }), i === 0 ? 'original' : shortLayer(full)));
    }
    svg.append(s('text', { class: 'axis-title', x: 16, y: mt + ph / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 16 ${mt + ph / 2})`, text: `${metricName} to the original` }));
    const orderTitle = {
      cascading_top_down: 'layers randomized cumulatively, from the output (left) to the input',
      cascading_bottom_up: 'layers randomized cumulatively, from the input (left) to the output',
      independent: 'one layer randomized at a time',
    }[mr.order] || 'randomization steps';
    svg.append(s('text', { class: 'axis-title', x: ml + pw / 2, y: H - 6, 'text-anchor': 'middle', text: orderTitle }));
    /* pass threshold (from the criterion) and the random-map floor */
    const thr = thresholdFor(mr.methods[methods[0]].criterion, metric);
    if (thr !== null && thr >= lo && thr <= hi) {
      svg.append(s('line', { class: 'thr', x1: ml, x2: ml + pw, y1: y(thr), y2: y(thr) }));
      svg.append(s('text', { class: 'thr-label', x: ml + pw + 6, y: y(thr) + 4, text: `pass: below ${thr}` }));
    }
    if (floors.length) {
      const f = floors.reduce((a, b) => a + b, 0) / floors.length;
      svg.append(s('line', { class: 'floor', x1: ml, x2: ml + pw, y1: y(f), y2: y(f) }));
      svg.append(s('text', { x: ml + pw + 6, y: y(f) + 4, text: 'random-map floor' }));
    }
    methods.forEach((m, j) => {
      const color = PALETTE[j % PALETTE.length];
      const shape = SHAPES[j % SHAPES.length];
      const steps = mr.methods[m].steps;
      const g = s('g', { class: 'series', 'data-method': m });
      let d = `M${x(0)} ${y(1)}`;
      let pen = true;
      steps.forEach((st, k) => {
        const v = st[metric];
        if (Number.isFinite(v)) { d += `${pen ? 'L' : 'M'}${x(k + 1)} ${y(v)}`; pen = true; } else pen = false;
      });
      g.append(s('path', { class: 'line', d, stroke: color, 'stroke-dasharray': j >= SHAPES.length ? '6 3' : null }));
      g.append(s('path', { class: 'pt-orig', d: markerPath(shape, x(0), y(1), 4.5), fill: color },
        s('title', { text: `${display(m)}, original: 1 (a map equals itself)` })));
      steps.forEach((st, k) => {
        const v = st[metric];
        const ok = Number.isFinite(v);
        const layer = stepLayer(mr, k);
        const tip = ok ? `${display(m)} after randomizing ${layer}: ${metric} ${v.toFixed(3)}`
          : `${display(m)} after randomizing ${layer}: ${metric} undefined (${st.undefined_reason || 'constant map'})`;
        g.append(s('path', {
          class: 'pt-step' + (ok ? '' : ' pt-undef'), 'data-method': m, 'data-step': k,
          d: markerPath(ok ? shape : 'cross', x(k + 1), ok ? y(v) : mt + ph, ok ? 4.5 : 4),
          fill: ok ? color : '#fff', stroke: ok ? null : color,
        }, s('title', { text: tip })));
      });
      const last = [...steps].reverse().find((st) => Number.isFinite(st[metric]));
      if (last) {
        g.append(s('text', { x: ml + pw + 6, y: y(last[metric]) + 4, fill: color, style: 'font-weight:600',
          'data-label-for': m, text: display(m) }));
      }
      svg.append(g);
    });
    spreadEndLabels(svg);
    return svg;
  }

  /* the method names at the right end of the lines must not overlap each other */
  function spreadEndLabels(svg) {
    const labels = $$('text[data-label-for]', svg).sort((a, b) => a.getAttribute('y') - b.getAttribute('y'));
    let prev = -Infinity;
    for (const t of labels) {
      const yv = Math.max(Number(t.getAttribute('y')), prev + 13);
      t.setAttribute('y', yv);
      prev = yv;
    }
  }

  function markerSwatch(j) {
    const color = PALETTE[j % PALETTE.length];
    return s('svg', { width: 26, height: 12, viewBox: '0 0 26 12', 'aria-hidden': 'true' },
      s('line', { x1: 1, x2: 25, y1: 6, y2: 6, stroke: color, 'stroke-width': 2.2,
        'stroke-dasharray': j >= SHAPES.length ? '6 3' : null }),
      s('path', { d: markerPath(SHAPES[j % SHAPES.length], 13, 6, 4), fill: color }));
  }

  function modelRandCard(mr, order) {
    const methods = order.filter((m) => mr.methods && mr.methods[m]);
    const wrap = h('div', { class: 'chart-wrap' });
    const table = h('div', { class: 'table-scroll' });
    const tabs = h('div', { class: 'metric-tabs', role: 'group', 'aria-label': 'Similarity measure' },
      METRICS.map(([key, label, long]) => h('button', { type: 'button', 'data-metric': key, title: long,
        'aria-pressed': String(key === state.metric), text: label })));
    const draw = () => {
      if (!methods.length) {
        wrap.replaceChildren(h('p', { class: 'note', text: 'No method in this request has a model-randomization result.' }));
        return;
      }
      wrap.replaceChildren(randChart(mr, methods, state.metric));
      table.replaceChildren(randTable(mr, methods, state.metric));
      $$('button', tabs).forEach((b) => b.setAttribute('aria-pressed', String(b.dataset.metric === state.metric)));
    };
    tabs.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-metric]');
      if (!b) return;
      state.metric = b.dataset.metric;
      draw();
    });
    draw();
    const sub = [`${mr.order.replace(/_/g, ' ')}`, `${mr.steps.length} step${mr.steps.length === 1 ? '' : 's'}`,
      `layers: ${mr.layers}`, `re-init ${mr.init}`, `target ${mr.target}`, `seed ${mr.seed}`].join(' · ');
    return h('section', { class: 'card', 'aria-labelledby': 'h-mr', id: 'model-randomization' },
      h('div', { class: 'card-head' }, h('h3', { id: 'h-mr', text: 'Model parameter randomization' }), tabs),
      h('div', { class: 'card-body' },
        h('p', { class: 'note', style: 'margin-top:0' }, sub,
          mr.nodes_total ? `. The cascade recomputed ${mr.nodes_recomputed} of ${mr.nodes_total} node evaluations.` : ''),
        wrap,
        h('ul', { class: 'legend', 'aria-label': 'Methods' }, methods.map((m, j) => h('li', {}, markerSwatch(j), display(m)))),
        h('ul', { class: 'verdicts', 'aria-label': 'Verdicts' }, methods.map((m) => {
          const x = mr.methods[m];
          return h('li', { 'data-method': m }, h('b', { text: display(m) }), h('span', {}, mark(x.passed, '', x.criterion)),
            h('span', { class: 'why', text: x.verdict || x.criterion || '' }));
        })),
        h('p', { class: 'note' }, 'A method passes when its map becomes dissimilar from the original once the weights are ',
          'random: a map that survives randomization does not explain what the model learned (Adebayo et al. 2018, §3).'),
        h('details', { class: 'numbers' }, h('summary', { text: 'Show the numbers' }), table)));
  }

  function randTable(mr, methods, metric) {
    const metricName = METRICS.find((q) => q[0] === metric)[1];
    return h('table', { class: 'data' },
      h('caption', { text: `${metricName} to the original map after each step` }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Randomized layer' }),
        methods.map((m) => h('th', { scope: 'col', text: display(m) })))),
      h('tbody', {},
        mr.steps.map((_, k) => h('tr', {}, h('th', { scope: 'row', class: 'mono', style: 'text-align:left;font-weight:400',
          text: stepLayer(mr, k) }),
        methods.map((m) => {
          const st = mr.methods[m].steps[k] || {};
          return h('td', { class: 'num', title: st[metric] === null ? st.undefined_reason || 'undefined' : null,
            text: fmt(st[metric]) });
        }))),
        h('tr', {}, h('th', { scope: 'row', style: 'text-align:left;font-weight:400', text: 'random-map floor' }),
          methods.map((m) => h('td', { class: 'num', text: fmt((mr.methods[m].floor || {})[metric]) })))));
  }

  /* -- label randomization and random logit: one row per method -- */
  function simTable(caption, methodsDoc, order) {
    const methods = order.filter((m) => methodsDoc && methodsDoc[m]);
    if (!methods.length) return h('p', { class: 'note', text: 'No method of this request has a result here.' });
    const cols = [['spearman', 'Spearman'], ['spearman_abs', 'Spearman (abs)'], ['ssim', 'SSIM'], ['hog', 'HOG']];
    return h('div', { class: 'table-scroll' }, h('table', { class: 'data' },
      h('caption', { text: caption }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Method' }), cols.map(([, l]) => h('th', { scope: 'col', text: l })),
        h('th', { scope: 'col', class: 'center', text: 'Result' }))),
      h('tbody', {}, methods.map((m) => {
        const x = methodsDoc[m];
        return h('tr', { 'data-method': m }, h('th', { scope: 'row', style: 'font-weight:600', text: display(m) }),
          cols.map(([k]) => h('td', { class: 'num', title: x[k] === null ? x.undefined_reason || 'undefined' : null, text: fmt(x[k]) })),
          h('td', { class: 'center' }, mark(x.passed, '', x.verdict)));
      }))));
  }

  function criteriaNote(methodsDoc) {
    const c = [...new Set(Object.values(methodsDoc || {}).map((x) => x.criterion).filter(Boolean))];
    return c.length ? h('p', { class: 'note', text: `Pass when ${c.join('; ')}.` }) : null;
  }

  function labelRandCard(lr, order) {
    const body = lr.status === 'unavailable'
      ? [h('p', { class: 'unavailable', id: 'label-unavailable' }, h('b', { text: 'Unavailable: ' }), lr.reason || 'no reason given')]
      : [simTable('Similarity between the map of this model and the map of its twin trained on shuffled labels',
        lr.methods, order), criteriaNote(lr.methods)];
    return h('section', { class: 'card', id: 'label-randomization', 'aria-labelledby': 'h-lr' },
      h('div', { class: 'card-head' }, h('h3', { id: 'h-lr', text: 'Label randomization' }),
        h('span', { class: 'sub', text: lr.twin ? `twin: ${lr.twin}` : 'no twin' })),
      h('div', { class: 'card-body' }, body));
  }

  function randomLogitCard(rl, order, doc) {
    const t = doc.target || {};
    return h('section', { class: 'card', id: 'random-logit', 'aria-labelledby': 'h-rl' },
      h('div', { class: 'card-head' }, h('h3', { id: 'h-rl', text: 'Random logit' }),
        h('span', { class: 'sub', text: `other class: ${rl.other_label} (#${rl.other_class})` })),
      h('div', { class: 'card-body' },
        simTable(`Similarity between the map for ${t.label} and the map for ${rl.other_label}`, rl.methods, order),
        criteriaNote(rl.methods)));
  }

  /* ---- wiring ----------------------------------------------------------------------------- */
  function init() {
    try {
      state.base = initialBase();
    } catch (e) {
      state.base = '';
      showBanner(new ApiError({ status: 0, title: 'Bad ?api parameter', detail: String(e.message || e) }));
    }
    state.key = sessionStorage.getItem(keySlot()) || '';
    fillConnForm();

    $('#conn').addEventListener('toggle', () => { if ($('#conn').open) fillConnForm(); });
    $('#conn-form').addEventListener('submit', (e) => {
      e.preventDefault();
      let base;
      try {
        base = normalizeBase($('#api-base').value);
      } catch (err) {
        $('#api-base').setCustomValidity('Enter an http(s) URL, or leave empty for this server.');
        $('#api-base').reportValidity();
        return;
      }
      $('#api-base').setCustomValidity('');
      state.base = base;
      if (base) sessionStorage.setItem('explaind.api_base', base); else sessionStorage.removeItem('explaind.api_base');
      const url = new URL(location.href);
      if (base) url.searchParams.set('api', base); else url.searchParams.delete('api');
      history.replaceState(null, '', url);
      state.key = $('#api-key').value.trim();
      if (state.key) sessionStorage.setItem(keySlot(), state.key); else sessionStorage.removeItem(keySlot());
      $('#conn').open = false;
      $('#conn summary').focus();
      connect();
    });
    $('#api-key-clear').addEventListener('click', () => {
      sessionStorage.removeItem(keySlot());
      state.key = '';
      $('#api-key').value = '';
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && $('#conn').open) { $('#conn').open = false; $('#conn summary').focus(); }
    });

    $('#model').addEventListener('change', (e) => selectModel(e.target.value));
    $('#form').addEventListener('submit', runExplain);
    $('#cancel').addEventListener('click', () => { if (state.busy) state.busy.abort(); });
    $('#alpha').addEventListener('input', (e) => { $('#alpha-out').textContent = Number(e.target.value).toFixed(2); });
    $('#colormap').addEventListener('change', (e) => { $('#colormap-swatch').dataset.cmap = e.target.value; });
    $('#sanity_layers_mode').addEventListener('change', (e) => {
      $('#sanity-layers-list-field').hidden = e.target.value !== 'list';
    });
    setupImageInput();
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
