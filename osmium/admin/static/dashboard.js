// osmium admin dashboard: polls the admin API every second and draws charts, workers, events and
// connections. No framework and no external file: the page ships in the package and works offline.
"use strict";

(() => {
  const TOKEN_KEY = "osmium-admin-token";
  const RANGE_KEY = "osmium-admin-range";
  const EVERY_SECOND = 1000;
  const CONNECTIONS_EVERY = 2000;
  const FETCH_TIMEOUT = 5000;
  const EVENTS_KEPT = 200;
  // Thousands of rows re-laid out every 2 s would make the page the bottleneck; the filter narrows.
  const CONNECTION_ROWS_SHOWN = 300;
  // A chart spans at least this much time, so a young server's first seconds are not stretched.
  const MIN_CHART_SPAN = 60;
  const WORKER_COLORS = ["#58a6ff", "#f0883e", "#3fb950", "#bc8cff", "#39c5cf", "#ff7b72", "#d29922", "#db61a2"];

  const $ = (selector, root = document) => root.querySelector(selector);

  // -- the API -----------------------------------------------------------------------------------

  class Unauthorized extends Error {}
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  let token = tokenFromHash() ?? sessionStorage.getItem(TOKEN_KEY) ?? "";

  function tokenFromHash() {
    const value = new URLSearchParams(location.hash.slice(1)).get("token");
    if (value === null) return null;
    sessionStorage.setItem(TOKEN_KEY, value);
    // Out of the address bar, so the token ends up in neither bookmarks nor screenshots.
    history.replaceState(null, "", location.pathname + location.search);
    return value;
  }

  async function api(path, method = "GET") {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT);
    try {
      const response = await fetch(path, { method, headers, cache: "no-store", signal: controller.signal });
      if (response.status === 401) throw new Unauthorized("unauthorized");
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new ApiError(body.error || `HTTP ${response.status}`, response.status);
      return body;
    } finally {
      clearTimeout(timer);
    }
  }

  // -- polling -----------------------------------------------------------------------------------

  // Each poller waits for its answer before it schedules the next, so a slow server never piles
  // requests up; a hidden tab polls nothing (the history catches up with ?since= on return).
  const pollers = [];
  let waitingForToken = false;

  function poll(every, task) {
    let timer = null;
    let busy = false;
    let again = false;
    const run = async () => {
      if (busy) {
        again = true;
        return;
      }
      clearTimeout(timer);
      if (waitingForToken) return;
      busy = true;
      try {
        if (!document.hidden) {
          await task();
          setLive(true);
        }
      } catch (error) {
        failed(error);
      } finally {
        busy = false;
      }
      if (again) {
        again = false;
        run();
      } else if (!waitingForToken) {
        timer = setTimeout(run, every);
      }
    };
    pollers.push(run);
    return run;
  }

  function failed(error) {
    if (error instanceof Unauthorized) {
      askForToken(Boolean(token));
    } else {
      setLive(false, error.name === "AbortError" ? "timed out" : "offline");
    }
  }

  function setLive(ok, text = "live") {
    const live = $("#live");
    live.classList.toggle("ok", ok);
    live.classList.toggle("error", !ok);
    $("#live-text").textContent = text;
    if (ok) live.title = `updated ${clock(Date.now() / 1000)}`;
  }

  function askForToken(refused) {
    waitingForToken = true;
    $("#token-error").hidden = !refused;
    $("#token-form-wrap").hidden = false;
    $("#token-input").focus();
    setLive(false, "no token");
  }

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("#token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#token-input").value = "";
    $("#token-form-wrap").hidden = true;
    waitingForToken = false;
    pollers.forEach((run) => run());
  });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) pollers.forEach((run) => run());
  });

  // -- formatting --------------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");

  function clock(t) {
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function integer(n) {
    return n == null ? "–" : Math.round(n).toLocaleString("en-US");
  }

  function rate(n) {
    if (n == null) return "–";
    return n < 100 ? n.toLocaleString("en-US", { maximumFractionDigits: 1 }) : integer(n);
  }

  function millis(ms) {
    if (ms == null) return "–";
    const digits = ms < 10 ? 2 : ms < 100 ? 1 : 0;
    return `${ms.toFixed(digits)} ms`;
  }

  function percent(p) {
    return p == null ? "–" : `${p.toFixed(p < 10 ? 1 : 0)} %`;
  }

  function bytes(n) {
    if (n == null) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = 0;
    while (n >= 1024 && unit < units.length - 1) {
      n /= 1024;
      unit += 1;
    }
    return `${unit && n < 10 ? n.toFixed(1) : Math.round(n)} ${units[unit]}`;
  }

  function duration(s) {
    if (s == null) return "–";
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(Math.floor(s % 60))}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  }

  function compact(n) {
    if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
    if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
    return `${+n.toFixed(2)}`;
  }

  // The element shows the formatted value; data-value keeps the number for scripts and tests.
  function showNumber(element, value, format) {
    element.textContent = format(value);
    element.dataset.value = value == null ? "" : String(value);
  }

  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text;
  }

  // -- charts ------------------------------------------------------------------------------------

  function cssColor(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function withAlpha(hex, alpha) {
    const value = parseInt(hex.slice(1), 16);
    return `rgba(${value >> 16}, ${(value >> 8) & 255}, ${value & 255}, ${alpha})`;
  }

  // A "nice" step (1, 2, 2.5 or 5 times a power of ten) giving about `count` intervals up to max.
  function niceStep(max, count) {
    const raw = max / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const residual = raw / magnitude;
    const factor = residual <= 1 ? 1 : residual <= 2 ? 2 : residual <= 2.5 ? 2.5 : residual <= 5 ? 5 : 10;
    return factor * magnitude;
  }

  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600];

  class Chart {
    // series(points) -> [{name, color, values}], values aligned with points (null: no value).
    // unit: the y axis scale (1, or 2**20 for bytes shown in MiB); axis(v): a tick label.
    constructor(figure, { series, format, axis, unit = 1, fill = false, minMax = 1 }) {
      this.canvas = $("canvas", figure);
      this.context = this.canvas.getContext("2d");
      this.series = series;
      this.format = format;
      this.axis = axis;
      this.unit = unit;
      this.fill = fill;
      this.minMax = minMax;
      this.hoverX = null;
      this.canvas.addEventListener("mousemove", (event) => {
        this.hoverX = event.offsetX;
        this.draw();
      });
      this.canvas.addEventListener("mouseleave", () => {
        this.hoverX = null;
        $("#chart-tooltip").hidden = true;
        this.draw();
      });
    }

    draw() {
      const { canvas, context: ctx } = this;
      const width = canvas.clientWidth;
      const height = canvas.clientHeight;
      const ratio = window.devicePixelRatio || 1;
      if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
        canvas.width = Math.round(width * ratio);
        canvas.height = Math.round(height * ratio);
      }
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      ctx.font = "10.5px system-ui, sans-serif";

      const { points, t0, t1 } = view();
      const series = this.series(points);
      let max = 0;
      for (const line of series) {
        for (const v of line.values) if (v != null && v > max) max = v;
      }
      const scaledMax = Math.max(max / this.unit, this.minMax);
      const step = niceStep(scaledMax, 3);
      const top = Math.ceil(scaledMax / step) * step;
      const ticks = [];
      for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);

      const left = Math.max(...ticks.map((v) => ctx.measureText(this.axis(v)).width)) + 8;
      const plot = { left, right: width - 4, top: 6, bottom: height - 16 };
      const x = (t) => plot.left + ((t - t0) / (t1 - t0)) * (plot.right - plot.left);
      const y = (v) => plot.bottom - (v / this.unit / top) * (plot.bottom - plot.top);

      // Grid and labels.
      ctx.strokeStyle = cssColor("--grid");
      ctx.fillStyle = cssColor("--muted");
      ctx.lineWidth = 1;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      for (const v of ticks) {
        const yy = Math.round(y(v * this.unit)) + 0.5;
        ctx.beginPath();
        ctx.moveTo(plot.left, yy);
        ctx.lineTo(plot.right, yy);
        ctx.stroke();
        ctx.fillText(this.axis(v), plot.left - 6, yy);
      }
      const span = t1 - t0;
      const timeStep = TIME_STEPS.find((s) => span / s <= 5) ?? TIME_STEPS[TIME_STEPS.length - 1];
      ctx.textAlign = "center";
      ctx.textBaseline = "alphabetic";
      for (let t = Math.ceil(t0 / timeStep) * timeStep; t <= t1; t += timeStep) {
        const label = timeStep >= 60 ? clock(t).slice(0, 5) : clock(t);
        const xx = x(t);
        if (xx - 24 < plot.left || xx + 24 > plot.right) continue;
        ctx.fillText(label, xx, height - 3);
      }

      // Lines: a gap where a value is missing or the points are more than 2.5 intervals apart.
      const gap = 2.5 * historyInterval;
      for (const line of series) {
        const segments = [];
        let segment = [];
        points.forEach((point, i) => {
          const v = line.values[i];
          const broken = segment.length && point.t - points[i - 1].t > gap;
          if (v == null || broken) {
            if (segment.length) segments.push(segment);
            segment = [];
          }
          if (v != null) segment.push([x(point.t), y(v)]);
        });
        if (segment.length) segments.push(segment);
        for (const part of segments) {
          if (this.fill && part.length > 1) {
            const gradient = ctx.createLinearGradient(0, plot.top, 0, plot.bottom);
            gradient.addColorStop(0, withAlpha(line.color, 0.28));
            gradient.addColorStop(1, withAlpha(line.color, 0.02));
            ctx.fillStyle = gradient;
            ctx.beginPath();
            ctx.moveTo(part[0][0], plot.bottom);
            for (const [px, py] of part) ctx.lineTo(px, py);
            ctx.lineTo(part[part.length - 1][0], plot.bottom);
            ctx.closePath();
            ctx.fill();
          }
          if (part.length === 1) {
            // A lone second between gaps: a dot, since a line needs two points.
            ctx.fillStyle = line.color;
            ctx.beginPath();
            ctx.arc(part[0][0], part[0][1], 2, 0, 2 * Math.PI);
            ctx.fill();
            continue;
          }
          ctx.strokeStyle = line.color;
          ctx.lineWidth = 1.6;
          ctx.lineJoin = "round";
          ctx.beginPath();
          part.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
          ctx.stroke();
        }
      }
      this.drawHover(points, series, plot, x, y);
    }

    drawHover(points, series, plot, x, y) {
      const tooltip = $("#chart-tooltip");
      if (this.hoverX == null || !points.length || this.hoverX < plot.left) {
        if (this.hoverX != null) tooltip.hidden = true;
        return;
      }
      // The point nearest the pointer, by binary search on time.
      let low = 0;
      let high = points.length - 1;
      while (low < high) {
        const middle = (low + high) >> 1;
        if (x(points[middle].t) < this.hoverX) low = middle + 1;
        else high = middle;
      }
      if (low > 0 && this.hoverX - x(points[low - 1].t) < x(points[low].t) - this.hoverX) low -= 1;
      const point = points[low];
      const ctx = this.context;
      const xx = Math.round(x(point.t)) + 0.5;
      ctx.strokeStyle = cssColor("--muted");
      ctx.setLineDash([3, 3]);
      ctx.beginPath();
      ctx.moveTo(xx, plot.top);
      ctx.lineTo(xx, plot.bottom);
      ctx.stroke();
      ctx.setLineDash([]);
      tooltip.replaceChildren(Object.assign(document.createElement("div"), { textContent: clock(point.t) }));
      for (const line of series) {
        const v = line.values[low];
        if (v != null) {
          ctx.fillStyle = line.color;
          ctx.beginPath();
          ctx.arc(xx, y(v), 3, 0, 2 * Math.PI);
          ctx.fill();
        }
        const row = document.createElement("div");
        const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
        swatch.style.background = line.color;
        row.append(swatch, `${line.name}: ${this.format(v)}`);
        tooltip.append(row);
      }
      const box = this.canvas.getBoundingClientRect();
      tooltip.hidden = false;
      const flip = box.left + xx + 14 + tooltip.offsetWidth > window.innerWidth;
      tooltip.style.left = `${box.left + xx + (flip ? -14 - tooltip.offsetWidth : 14)}px`;
      tooltip.style.top = `${box.top + plot.top}px`;
    }
  }

  // -- history -----------------------------------------------------------------------------------

  let historyPoints = [];
  let historyInterval = 1;
  let historySeconds = 3600;
  let range = Number(localStorage.getItem(RANGE_KEY) ?? 0);
  $("#range").value = String(range);
  $("#range").addEventListener("change", () => {
    range = Number($("#range").value);
    localStorage.setItem(RANGE_KEY, String(range));
    drawCharts();
  });

  // The points inside the chosen window, and the time span the charts show.
  function view() {
    const last = historyPoints.length ? historyPoints[historyPoints.length - 1].t : Date.now() / 1000;
    const first = historyPoints.length ? historyPoints[0].t : last;
    let t0 = range ? Math.max(first, last - range) : first;
    t0 = Math.min(t0, last - MIN_CHART_SPAN);
    let start = historyPoints.length;
    while (start > 0 && historyPoints[start - 1].t >= t0) start -= 1;
    return { points: historyPoints.slice(start), t0, t1: last };
  }

  const workerColors = new Map();
  function workerColor(pid) {
    if (!workerColors.has(pid)) workerColors.set(pid, WORKER_COLORS[workerColors.size % WORKER_COLORS.length]);
    return workerColors.get(pid);
  }

  function workerPids(points) {
    const pids = new Set();
    for (const point of points) for (const pid of Object.keys(point.workers || {})) pids.add(pid);
    return [...pids].sort((a, b) => a - b);
  }

  function perWorker(field) {
    return (points) =>
      workerPids(points).map((pid) => ({
        name: `worker ${pid}`,
        color: workerColor(pid),
        values: points.map((point) => point.workers?.[pid]?.[field] ?? null),
      }));
  }

  const total = (field) => (points) => [
    { name: field, color: cssColor(SERIES_COLORS[field]), values: points.map((p) => p[field] ?? null) },
  ];
  const SERIES_COLORS = { rps: "--series-1", connections: "--series-4", streams: "--series-5" };
  const MIB = 2 ** 20;

  const charts = [
    new Chart($('[data-chart="rps"]'), { series: total("rps"), format: rate, axis: compact, fill: true }),
    new Chart($('[data-chart="latency"]'), {
      series: (points) => [
        { name: "p50", color: cssColor("--series-2"), values: points.map((p) => p.p50_ms ?? null) },
        { name: "p99", color: cssColor("--series-3"), values: points.map((p) => p.p99_ms ?? null) },
      ],
      format: millis,
      axis: (v) => `${compact(v)} ms`,
    }),
    new Chart($('[data-chart="connections"]'), {
      series: total("connections"),
      format: integer,
      axis: compact,
      fill: true,
      minMax: 4,
    }),
    new Chart($('[data-chart="streams"]'), {
      series: total("streams"),
      format: integer,
      axis: compact,
      fill: true,
      minMax: 4,
    }),
    new Chart($('[data-chart="cpu"]'), {
      series: perWorker("cpu_percent"),
      format: percent,
      axis: (v) => `${compact(v)}%`,
      minMax: 10,
    }),
    new Chart($('[data-chart="rss"]'), {
      series: perWorker("rss_bytes"),
      format: bytes,
      axis: (v) => `${compact(v)} MiB`,
      unit: MIB,
      minMax: 16,
    }),
  ];

  function drawCharts() {
    charts.forEach((chart) => chart.draw());
    showCurrentValues();
  }

  function showCurrentValues() {
    const point = historyPoints[historyPoints.length - 1];
    if (!point) return;
    showNumber($("#rps-now"), point.rps, rate);
    showNumber($("#p50-now"), point.p50_ms, millis);
    showNumber($("#p99-now"), point.p99_ms, millis);
    showNumber($("#connections-now"), point.connections, integer);
    showNumber($("#streams-now"), point.streams, integer);
    const workers = Object.entries(point.workers || {}).sort(([a], [b]) => a - b);
    const cpu = workers.reduce((sum, [, w]) => sum + (w.cpu_percent ?? 0), 0);
    const rss = workers.reduce((sum, [, w]) => sum + (w.rss_bytes ?? 0), 0);
    showNumber($("#cpu-now"), cpu, percent);
    showNumber($("#rss-now"), rss, bytes);
    legend($("#cpu-legend"), workers, (w) => percent(w.cpu_percent));
    legend($("#rss-legend"), workers, (w) => bytes(w.rss_bytes));
  }

  function legend(element, workers, value) {
    element.replaceChildren(
      ...workers.map(([pid, w]) => {
        const item = document.createElement("span");
        item.style.setProperty("--swatch", workerColor(pid));
        item.append(`${pid} `, Object.assign(document.createElement("b"), { textContent: value(w) }));
        return item;
      }),
    );
  }

  async function updateHistory() {
    const last = historyPoints[historyPoints.length - 1];
    const answer = await api(last ? `api/history?since=${last.t}` : "api/history");
    historyInterval = answer.interval || historyInterval;
    const fresh = (answer.points || []).filter((point) => !last || point.t > last.t);
    historyPoints.push(...fresh);
    const oldest = historyPoints[historyPoints.length - 1]?.t - historySeconds;
    const drop = historyPoints.findIndex((point) => point.t >= oldest);
    if (drop > 0) historyPoints = historyPoints.slice(drop);
    drawCharts();
  }

  new ResizeObserver(() => charts.forEach((chart) => chart.draw())).observe($(".charts"));
  matchMedia("(prefers-color-scheme: light)").addEventListener("change", drawCharts);

  // -- table rows, kept per key so buttons and hover survive a refresh -----------------------------

  function syncRows(tbody, items, keyOf, build, update) {
    const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
    let cursor = tbody.firstElementChild;
    for (const item of items) {
      const key = String(keyOf(item));
      let row = existing.get(key);
      if (row) {
        existing.delete(key);
      } else {
        row = build(item);
        row.dataset.key = key;
      }
      update(row, item);
      if (row === cursor) cursor = cursor.nextElementSibling;
      else tbody.insertBefore(row, cursor);
    }
    existing.forEach((row) => row.remove());
  }

  function cells(row, count) {
    for (let i = 0; i < count; i += 1) row.append(document.createElement("td"));
    return row.cells;
  }

  function button(label, className, title) {
    return Object.assign(document.createElement("button"), { type: "button", textContent: label, className, title });
  }

  function badge(cell, text, kind) {
    let element = cell.firstElementChild;
    if (!element) element = cell.appendChild(document.createElement("span"));
    element.className = `badge ${kind}`;
    setText(element, text);
  }

  // -- state and workers -------------------------------------------------------------------------

  let knownWorkers = [];

  async function updateState() {
    const state = await api("api/state");
    const { server, totals, workers } = state;
    historySeconds = server.history_seconds || historySeconds;
    setText($("#server-version"), server.version ?? "–");
    setText($("#server-pid"), String(server.pid ?? "–"));
    setText($("#server-url"), server.url ?? "–");
    setText($("#server-uptime"), duration(server.uptime));
    setText($("#server-requests"), integer(totals?.requests));
    const respawns = Object.entries(server.respawns || {});
    setText($("#server-respawns"), integer(respawns.reduce((sum, [, n]) => sum + n, 0)));
    $("#server-respawns").title = respawns.map(([cause, n]) => `${cause}: ${n}`).join(", ");
    setText($("#server-reloads"), integer(server.reloads));
    $("#server-reloads").title = `TTIN ${server.ttin ?? 0}, TTOU ${server.ttou ?? 0}`;
    setText($("#workers-count"), `${workers.length} running · ${server.slots} slots`);
    if (!historyPoints.length) {
      // Before the first history second, show the live totals rather than dashes.
      showNumber($("#rps-now"), totals.rps, rate);
      showNumber($("#connections-now"), totals.connections, integer);
      showNumber($("#streams-now"), totals.streams, integer);
    }
    knownWorkers = workers;
    syncRows($("#workers tbody"), workers, (w) => w.pid, buildWorkerRow, updateWorkerRow);
    updateWorkerFilter();
  }

  function buildWorkerRow(worker) {
    const row = document.createElement("tr");
    row.dataset.pid = worker.pid;
    const c = cells(row, 11);
    c[0].className = "mono";
    for (const i of [3, 4, 5, 6, 7, 8, 9]) c[i].className = "num";
    c[10].className = "buttons";
    c[10].append(button("drain", "small warn drain-worker", "Retire this worker; a new one takes its slot"));
    return row;
  }

  function updateWorkerRow(row, worker) {
    const c = row.cells;
    setText(c[0], String(worker.pid));
    setText(c[1], String(worker.slot));
    badge(c[2], worker.state, worker.state);
    setText(c[3], rate(worker.rps));
    setText(c[4], integer(worker.connections));
    setText(c[5], integer(worker.streams));
    setText(c[6], percent(worker.cpu_percent));
    setText(c[7], bytes(worker.rss_bytes));
    setText(c[8], integer(worker.requests));
    setText(c[9], duration(worker.uptime));
    c[10].firstElementChild.disabled = worker.state === "retiring";
  }

  $("#workers tbody").addEventListener("click", (event) => {
    const target = event.target.closest("button.drain-worker");
    if (!target) return;
    const pid = target.closest("tr").dataset.pid;
    target.disabled = true;
    act(`api/workers/${pid}/drain`, `worker ${pid} draining`);
  });
  $("#add-worker").addEventListener("click", () => act("api/workers/add", "adding a worker"));
  $("#remove-worker").addEventListener("click", () => act("api/workers/remove", "removing a worker"));
  $("#rolling-reload").addEventListener("click", () => act("api/reload", "rolling reload started"));

  // -- actions -----------------------------------------------------------------------------------

  async function act(path, done, refresh = [stateNow, eventsNow]) {
    try {
      const answer = await api(path, "POST");
      toast(typeof done === "function" ? done(answer) : done);
      return answer;
    } catch (error) {
      if (error instanceof Unauthorized) failed(error);
      else toast(`${path.replace(/^api\//, "")}: ${error.message}`, true);
      return null;
    } finally {
      refresh.forEach((run) => run());
    }
  }

  function toast(text, error = false) {
    const element = Object.assign(document.createElement("div"), {
      className: `toast${error ? " error" : ""}`,
      textContent: text,
    });
    $("#toasts").append(element);
    setTimeout(() => element.remove(), error ? 6000 : 3000);
  }

  // -- events ------------------------------------------------------------------------------------

  let eventsNext = null;

  const EVENT_TONES = {
    "worker-exited": (e) => (["crash", "timeout"].includes(e.cause) ? "bad" : "warn"),
    "worker-retiring": () => "warn",
    "worker-drained": () => "warn",
    defence: () => "warn",
    "stream-reset": () => "warn",
    "worker-ready": () => "good",
    "reload-done": () => "good",
  };

  async function updateEvents() {
    const answer = await api(eventsNext == null ? "api/events" : `api/events?since=${eventsNext}`);
    eventsNext = answer.next ?? eventsNext;
    const list = $("#events");
    const fresh = (answer.events || []).slice(-EVENTS_KEPT);
    if (fresh.length) list.querySelector(".empty-item")?.remove();
    for (const event of fresh) list.prepend(eventItem(event));
    while (list.children.length > EVENTS_KEPT) list.lastElementChild.remove();
    if (!list.children.length) {
      list.append(Object.assign(document.createElement("li"), { className: "empty-item", textContent: "No events yet." }));
    }
    setText($("#events-count"), eventsNext ? `${integer(eventsNext)} so far` : "");
  }

  function eventItem(event) {
    const item = document.createElement("li");
    item.dataset.seq = event.seq;
    const time = Object.assign(document.createElement("time"), { textContent: clock(event.t) });
    const tone = EVENT_TONES[event.kind]?.(event) ?? "";
    const kind = Object.assign(document.createElement("span"), { className: `kind ${tone}`, textContent: event.kind });
    const message = Object.assign(document.createElement("span"), { className: "message", textContent: event.message });
    const details = Object.entries(event).filter(([key]) => !["seq", "t", "kind", "message"].includes(key));
    message.title = [event.message, ...details.map(([key, value]) => `${key}: ${value}`)].join("\n");
    item.append(time, kind, message);
    return item;
  }

  // -- connections -------------------------------------------------------------------------------

  let connections = [];
  let sortKey = "age";
  let descending = true;
  const TEXT_COLUMNS = new Set(["id", "peer", "protocol", "worker"]);

  async function updateConnections() {
    const answer = await api("api/connections");
    connections = answer.connections || [];
    const unanswered = answer.unanswered || [];
    const note = $("#connections-note");
    note.classList.toggle("gone", unanswered.length > 0);
    note.dataset.unanswered = unanswered.join(" ");
    renderConnections();
  }

  function updateWorkerFilter() {
    const select = $("#worker-filter");
    const pids = new Set([...knownWorkers.map((w) => String(w.pid)), ...connections.map((c) => String(c.worker))]);
    if (select.value) pids.add(select.value);
    const wanted = [...pids].sort((a, b) => a - b);
    const present = [...select.options].slice(1).map((option) => option.value);
    if (wanted.join() === present.join()) return;
    const chosen = select.value;
    select.replaceChildren(select.options[0], ...wanted.map((pid) => new Option(`worker ${pid}`, pid)));
    select.value = chosen;
  }

  function renderConnections() {
    const text = $("#connection-filter").value.trim().toLowerCase();
    const worker = $("#worker-filter").value;
    const shown = connections.filter(
      (c) =>
        (!worker || String(c.worker) === worker) &&
        (!text || [c.peer, c.protocol, c.id].some((field) => String(field).toLowerCase().includes(text))),
    );
    const direction = descending ? -1 : 1;
    shown.sort((a, b) => {
      const x = a[sortKey];
      const y = b[sortKey];
      if (x == null || y == null) return (x == null) - (y == null) || byId(a, b); // missing last
      return (x < y ? -1 : x > y ? 1 : 0) * direction || byId(a, b);
    });
    const rows = shown.slice(0, CONNECTION_ROWS_SHOWN);
    syncRows($("#connections tbody"), rows, (c) => c.id, buildConnectionRow, updateConnectionRow);
    setText($("#connections-count"), connections.length ? String(connections.length) : "");
    $("#connections-empty").hidden = rows.length > 0;
    setText($("#connections-empty"), connections.length ? "No connection matches the filter." : "No connections.");
    const notes = [];
    if (shown.length > rows.length) notes.push(`showing ${rows.length} of ${shown.length}`);
    else if (shown.length !== connections.length) notes.push(`${shown.length} shown`);
    const unanswered = $("#connections-note").dataset.unanswered;
    if (unanswered) notes.push(`no answer from worker ${unanswered}`);
    setText($("#connections-note"), notes.join(" · "));
    updateWorkerFilter();
  }

  // Ties broken by id, so rows with equal values do not swap places on every refresh.
  function byId(a, b) {
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  function buildConnectionRow(connection) {
    const row = document.createElement("tr");
    row.dataset.connectionId = connection.id;
    const c = cells(row, 12);
    c[0].className = "mono";
    c[2].className = "mono";
    for (let i = 4; i <= 10; i += 1) c[i].className = "num";
    c[11].className = "buttons";
    c[11].append(
      button("ping", "small ping-connection", "Send a PING and show the round trip"),
      button("close", "small warn close-connection", "GOAWAY(NO_ERROR): open streams finish, then it closes"),
      button("close now", "small danger close-connection-now", "Close at once: open streams are cut"),
    );
    return row;
  }

  function updateConnectionRow(row, connection) {
    const c = row.cells;
    setText(c[0], connection.id);
    setText(c[1], String(connection.worker));
    setText(c[2], connection.peer);
    badge(c[3], connection.tls ? `${connection.protocol} · TLS` : connection.protocol, connection.protocol.replace(/\W/g, ""));
    setText(c[4], duration(connection.age));
    setText(c[5], duration(connection.idle));
    setText(c[6], integer(connection.requests));
    setText(c[7], integer(connection.streams_open));
    setText(c[8], bytes(connection.bytes_in));
    setText(c[9], bytes(connection.bytes_out));
    setText(c[10], millis(connection.ping_rtt_ms));
    row.classList.toggle("selected", connection.id === detailId);
  }

  $("#connection-filter").addEventListener("input", renderConnections);
  $("#worker-filter").addEventListener("change", renderConnections);

  $("#connections thead").addEventListener("click", (event) => {
    const header = event.target.closest("th[data-sort]");
    if (!header) return;
    const key = header.dataset.sort;
    descending = key === sortKey ? !descending : !TEXT_COLUMNS.has(key);
    sortKey = key;
    markSortedColumn();
    renderConnections();
  });

  function markSortedColumn() {
    for (const header of document.querySelectorAll("#connections th[data-sort]")) {
      header.classList.toggle("sorted", header.dataset.sort === sortKey);
      header.classList.toggle("ascending", header.dataset.sort === sortKey && !descending);
    }
  }
  markSortedColumn();

  $("#connections tbody").addEventListener("click", (event) => {
    const row = event.target.closest("tr");
    if (!row) return;
    const id = row.dataset.connectionId;
    const target = event.target.closest("button");
    if (!target) openDetail(id);
    else if (target.classList.contains("ping-connection")) ping(id);
    else if (target.classList.contains("close-connection")) close(id, "graceful", row);
    else if (target.classList.contains("close-connection-now")) close(id, "now", row);
  });

  function connectionPath(id) {
    return `api/connections/${encodeURIComponent(id)}`;
  }

  async function ping(id) {
    const answer = await act(`${connectionPath(id)}/ping`, (a) => `ping ${id}: ${millis(a.rtt_ms)}`, [
      connectionsNow,
      detailNow,
    ]);
    const row = $(`#connections tr[data-connection-id="${CSS.escape(id)}"]`);
    if (answer && row) setText(row.cells[10], millis(answer.rtt_ms));
  }

  function close(id, mode, row) {
    row?.classList.add("closing");
    const how = mode === "now" ? "closed" : "closing (GOAWAY)";
    act(`${connectionPath(id)}/close?mode=${mode}`, `${id} ${how}`, [connectionsNow, detailNow, eventsNow]);
  }

  // -- one connection's detail -------------------------------------------------------------------

  let detailId = null;

  function openDetail(id) {
    detailId = id;
    setText($("#detail-id"), id);
    $("#detail-body").replaceChildren();
    $("#connection-detail").hidden = false;
    for (const row of $("#connections tbody").rows) row.classList.toggle("selected", row.dataset.connectionId === id);
    detailNow();
  }

  function closeDetail() {
    detailId = null;
    $("#connection-detail").hidden = true;
    for (const row of $("#connections tbody").rows) row.classList.remove("selected");
  }
  $("#detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && detailId) closeDetail();
  });

  async function updateDetail() {
    if (!detailId) return;
    const id = detailId;
    let connection;
    try {
      connection = await api(connectionPath(id));
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      if (id === detailId) markDetailGone();
      return;
    }
    if (id === detailId) renderDetail(connection);
  }

  function markDetailGone() {
    const body = $("#detail-body");
    if (body.querySelector(".gone")) return;
    body.prepend(Object.assign(document.createElement("p"), { className: "gone", textContent: "This connection is closed." }));
    body.querySelectorAll("button").forEach((b) => (b.disabled = true));
  }

  function facts(pairs) {
    const list = Object.assign(document.createElement("dl"), { className: "facts" });
    for (const [name, value] of pairs) {
      list.append(
        Object.assign(document.createElement("dt"), { textContent: name }),
        Object.assign(document.createElement("dd"), { textContent: value }),
      );
    }
    return list;
  }

  function renderDetail(c) {
    const tls = c.tls ? `${c.tls.version} · ${c.tls.cipher} · ALPN ${c.tls.alpn ?? "–"} · SNI ${c.tls.sni ?? "–"}` : "none";
    const windows = c.windows ? `send ${integer(c.windows.send)} · receive ${integer(c.windows.receive)}` : "–";
    const actions = Object.assign(document.createElement("div"), { className: "actions" });
    const pingButton = button("ping", "detail-ping", "Send a PING and show the round trip");
    const closeButton = button("close (GOAWAY)", "warn detail-close-graceful", "Open streams finish, then it closes");
    const closeNowButton = button("close now", "danger detail-close-now", "Close at once");
    pingButton.addEventListener("click", () => ping(c.id));
    closeButton.addEventListener("click", () => close(c.id, "graceful"));
    closeNowButton.addEventListener("click", () => close(c.id, "now"));
    actions.append(pingButton, closeButton, closeNowButton);
    const overview = facts([
      ["worker", `${c.worker} (slot ${c.slot})`],
      ["peer", c.peer],
      ["protocol", c.protocol],
      ["TLS", tls],
      ["age / idle", `${duration(c.age)} / ${duration(c.idle)}`],
      ["requests", integer(c.requests)],
      ["bytes in / out", `${bytes(c.bytes_in)} / ${bytes(c.bytes_out)}`],
      ["flow windows", windows],
      ["output queued", bytes(c.output_queued)],
      ["PING RTT", millis(c.ping_rtt_ms)],
    ]);
    const streamsTitle = Object.assign(document.createElement("h3"), {
      textContent: `Streams (${(c.streams || []).length})`,
    });
    const streams = Object.assign(document.createElement("div"), { className: "table-wrap" });
    streams.append(streamsTable(c));
    $("#detail-body").replaceChildren(actions, overview, streamsTitle, streams);
  }

  function streamsTable(c) {
    const streams = c.streams || [];
    if (!streams.length) return Object.assign(document.createElement("p"), { className: "empty", textContent: "No open streams." });
    const table = document.createElement("table");
    table.id = "detail-streams";
    const head = table.createTHead().insertRow();
    const columns = ["id", "request", "state", "urgency", "in", "out", "age", "waiting", "window", ""];
    columns.forEach((name, i) => {
      const th = document.createElement("th");
      th.textContent = name;
      if (i >= 3 && i <= 8) th.className = "num";
      head.append(th);
    });
    const body = table.createTBody();
    for (const s of streams) {
      const row = body.insertRow();
      row.dataset.streamId = s.id;
      const values = [
        String(s.id),
        `${s.method} ${s.path}`,
        s.state,
        `${s.urgency ?? "–"}${s.incremental ? " · inc" : ""}`,
        bytes(s.bytes_in),
        bytes(s.bytes_out),
        duration(s.age),
        s.waiting ?? "–",
        s.send_window == null ? "–" : integer(s.send_window),
      ];
      values.forEach((value, i) => {
        const cell = row.insertCell();
        cell.textContent = value;
        if (i >= 3 && i <= 8) cell.className = "num";
        if (i === 1) cell.className = "mono";
      });
      const reset = button("reset", "small danger reset-stream", "RST_STREAM(CANCEL) to the client");
      reset.addEventListener("click", () =>
        act(`${connectionPath(c.id)}/streams/${s.id}/reset`, `stream ${s.id} of ${c.id} reset`, [detailNow, eventsNow]),
      );
      const cell = row.insertCell();
      cell.className = "buttons";
      cell.append(reset);
    }
    return table;
  }

  // -- start -------------------------------------------------------------------------------------

  const stateNow = poll(EVERY_SECOND, updateState);
  poll(EVERY_SECOND, updateHistory);
  const eventsNow = poll(EVERY_SECOND, updateEvents);
  const connectionsNow = poll(CONNECTIONS_EVERY, updateConnections);
  const detailNow = poll(CONNECTIONS_EVERY, updateDetail);
  pollers.forEach((run) => run());
})();
