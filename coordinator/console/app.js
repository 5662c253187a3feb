// Tributary's web console: Preact with htm (no build step), uPlot for charts. It reads the
// HTTP admin API, writes and browses records through the REST API under /rest, and shows
// live records from /console/live/{topic} (server-sent events).
import { html, render, useState, useEffect, useRef, useCallback } from "/console/vendor/htm-preact.module.js";

// ---- talking to the coordinator --------------------------------------------------------

async function call(method, path, body, contentType = "application/json") {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["content-type"] = contentType;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new Error(`The coordinator did not answer (${e.message}); is it running?`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!response.ok) {
    const message = (data && (data.error || data.message)) || `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return data;
}
const get = (path) => call("GET", path);

// Polls `path` every `ms` while the component is shown: [data, error, reload].
function usePoll(path, ms = 5000) {
  const [state, setState] = useState({ data: null, error: null });
  const load = useCallback(() => {
    if (!path) return;
    get(path).then((data) => setState({ data, error: null }), (e) => setState((s) => ({ data: s.data, error: e.message })));
  }, [path]);
  useEffect(() => {
    setState({ data: null, error: null });
    load();
    const t = setInterval(load, ms);
    return () => clearInterval(t);
  }, [load, ms]);
  return [state.data, state.error, load];
}

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

// ---- formatting ------------------------------------------------------------------------

const fmtBytes = (n) => {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const fmtTime = (ms) => (ms === null || ms === undefined || ms < 0 ? "–" : new Date(ms).toISOString().replace("T", " ").replace("Z", ""));
const b64ToBytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const utf8ToB64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
function decodeText(b64) {
  if (b64 === null || b64 === undefined) return null;
  try { return new TextDecoder("utf-8", { fatal: true }).decode(b64ToBytes(b64)); } catch (_) { return `base64:${b64}`; }
}
function pretty(text) {
  if (text === null) return null;
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

const Err = ({ error }) => (error ? html`<div class="error" role="alert">${error}</div>` : null);

// ---- pages -----------------------------------------------------------------------------

function Overview() {
  const [health, healthErr] = usePoll("/health");
  const [brokers, brokersErr] = usePoll("/brokers");
  const [parts, partsErr] = usePoll("/partitions");
  const [clusters] = usePoll("/rest/v3/clusters", 30000);
  const clusterId = clusters && clusters.data && clusters.data[0] && clusters.data[0].cluster_id;
  return html`
    <h1>Cluster ${clusterId ? html`<span class="muted">${clusterId}</span>` : null}</h1>
    <${Err} error=${healthErr || brokersErr || partsErr} />
    <div class="cards">
      <div class="card"><div class="label">ZooKeeper</div>
        <div class="value ${health && health.zookeeper === "connected" ? "ok" : "bad"}" id="zk-status">${health ? health.zookeeper : "…"}</div></div>
      <div class="card"><div class="label">Active controller</div>
        <div class="value" id="controller">${health && health.active_controller_id !== undefined ? html`${health.active_controller_id} <span class="muted">epoch ${health.controller_epoch}</span>` : "none"}</div></div>
      <div class="card"><div class="label">Brokers</div><div class="value" id="broker-count">${brokers ? brokers.length : "…"}</div></div>
      <div class="card"><div class="label">Partitions</div><div class="value">${parts ? parts.partitions : "…"}</div></div>
      <div class="card"><div class="label">Under-replicated</div>
        <div class="value ${parts && parts.under_replicated.length ? "bad" : "ok"}" id="under-replicated">${parts ? parts.under_replicated.length : "…"}</div></div>
      <div class="card"><div class="label">Offline</div>
        <div class="value ${parts && parts.offline.length ? "bad" : "ok"}" id="offline">${parts ? parts.offline.length : "…"}</div></div>
    </div>
    <h2>Brokers</h2>
    <${BrokerTable} brokers=${brokers} />
    ${parts && (parts.under_replicated.length || parts.offline.length) ? html`
      <h2>Partitions needing attention</h2>
      <table><thead><tr><th>Topic</th><th>Partition</th><th>Leader</th><th>Replicas</th><th>ISR</th><th>Problem</th></tr></thead>
      <tbody>${[...parts.offline.map((p) => [p, "offline"]), ...parts.under_replicated.map((p) => [p, "under-replicated"])].map(([p, what]) => html`
        <tr><td><a href="#/topics/${encodeURIComponent(p.topic)}">${p.topic}</a></td><td>${p.partition}</td><td>${p.leader ?? "none"}</td>
        <td>${p.replicas.join(", ")}</td><td>${p.isr.join(", ")}</td><td class="bad">${what}</td></tr>`)}</tbody></table>` : null}`;
}

function BrokerTable({ brokers }) {
  if (!brokers) return html`<p class="muted">Loading…</p>`;
  if (!brokers.length) return html`<p class="error">No broker is registered in ZooKeeper. Start a broker.</p>`;
  return html`<table id="brokers"><thead><tr><th>Id</th><th>Endpoints</th><th>Rack</th><th class="num">Epoch</th></tr></thead>
    <tbody>${brokers.map((b) => html`<tr><td>${b.id}</td><td>${b.endpoints.join(", ")}</td><td>${b.rack || "–"}</td><td class="num">${b.broker_epoch}</td></tr>`)}</tbody></table>`;
}

function Brokers() {
  const [brokers, err] = usePoll("/brokers");
  const [defaults] = usePoll("/brokers/default/configs", 30000);
  return html`<h1>Brokers</h1><${Err} error=${err} /><${BrokerTable} brokers=${brokers} />
    <h2>Dynamic settings for every broker</h2>
    ${defaults ? html`<${ConfigTable} configs=${defaults.configs} />` : html`<p class="muted">Loading…</p>`}`;
}

function ConfigTable({ configs, onDelete }) {
  const entries = Object.entries(configs || {});
  if (!entries.length) return html`<p class="muted">No overrides: the defaults apply.</p>`;
  return html`<table><thead><tr><th>Setting</th><th>Value</th>${onDelete ? html`<th></th>` : null}</tr></thead>
    <tbody>${entries.map(([k, v]) => html`<tr><td>${k}</td><td>${v}</td>${onDelete ? html`<td><button class="secondary" onClick=${() => onDelete(k)}>Remove</button></td>` : null}</tr>`)}</tbody></table>`;
}

function Topics() {
  const [topics, err, reload] = usePoll("/topics?stats=true");
  const prev = useRef({});
  const [rates, setRates] = useState({});
  useEffect(() => {
    if (!topics) return;
    const now = Date.now();
    const next = {};
    const r = {};
    for (const t of topics) {
      next[t.name] = { at: now, end: t.end_offset };
      const p = prev.current[t.name];
      if (p && t.end_offset !== undefined && now > p.at) r[t.name] = Math.max(0, (t.end_offset - p.end) / ((now - p.at) / 1000));
    }
    prev.current = next;
    setRates((old) => ({ ...old, ...r }));
  }, [topics]);
  const [form, setForm] = useState({ name: "", partitions: 1, replication_factor: 1, config: "" });
  const [message, setMessage] = useState(null);
  const [formErr, setFormErr] = useState(null);
  const [confirming, setConfirming] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setFormErr(null); setMessage(null);
    const config = {};
    for (const line of form.config.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const i = line.indexOf("=");
      if (i < 1) { setFormErr(`"${line}" is not key=value`); return; }
      config[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    try {
      await call("POST", "/topics", { name: form.name, partitions: Number(form.partitions), replication_factor: Number(form.replication_factor), config });
      setMessage(`Topic ${form.name} created.`);
      setForm({ ...form, name: "", config: "" });
      reload();
    } catch (e) { setFormErr(e.message); }
  };
  const remove = async (name) => {
    try { await call("DELETE", `/topics/${encodeURIComponent(name)}`); setMessage(`Topic ${name} marked for deletion.`); setConfirming(null); reload(); }
    catch (e) { setFormErr(e.message); }
  };
  return html`
    <h1>Topics</h1>
    <${Err} error=${err} />
    <form class="inline" id="create-topic" onSubmit=${create}>
      <label>Name<input name="name" required value=${form.name} onInput=${(e) => setForm({ ...form, name: e.target.value })} /></label>
      <label>Partitions<input name="partitions" type="number" min="1" value=${form.partitions} onInput=${(e) => setForm({ ...form, partitions: e.target.value })} /></label>
      <label>Replication factor<input name="replication_factor" type="number" min="1" value=${form.replication_factor} onInput=${(e) => setForm({ ...form, replication_factor: e.target.value })} /></label>
      <label>Configs (key=value per line)<textarea name="config" value=${form.config} onInput=${(e) => setForm({ ...form, config: e.target.value })}></textarea></label>
      <button type="submit">Create topic</button>
    </form>
    <${Err} error=${formErr} />
    ${message ? html`<div class="notice" id="topic-message">${message}</div>` : null}
    ${topics ? html`<table id="topics"><thead><tr><th>Topic</th><th class="num">Partitions</th><th class="num">Replication</th>
      <th class="num">Size</th><th class="num">Messages</th><th class="num">Messages/s</th><th></th></tr></thead>
      <tbody>${topics.map((t) => html`<tr data-topic=${t.name}>
        <td><a href="#/topics/${encodeURIComponent(t.name)}">${t.name}</a>${t.marked_for_deletion ? html` <span class="bad">(deleting)</span>` : null}</td>
        <td class="num">${t.partitions}</td><td class="num">${t.replication_factor}</td>
        <td class="num">${fmtBytes(t.size_bytes)}</td><td class="num">${fmtNum(t.messages)}</td>
        <td class="num">${rates[t.name] === undefined ? "–" : rates[t.name].toFixed(1)}</td>
        <td>${confirming === t.name
          ? html`<button class="danger" onClick=${() => remove(t.name)}>Really delete ${t.name}</button> <button class="secondary" onClick=${() => setConfirming(null)}>Keep</button>`
          : html`<button class="secondary" onClick=${() => setConfirming(t.name)}>Delete</button>`}</td></tr>`)}</tbody></table>` : html`<p class="muted">Loading…</p>`}`;
}

function Topic({ name, tab }) {
  const base = `#/topics/${encodeURIComponent(name)}`;
  const tabs = [["messages", "Messages"], ["partitions", "Partitions"], ["configs", "Configs"], ["produce", "Produce"]];
  const current = tab || "messages";
  return html`<h1>Topic ${name}</h1>
    <div class="tabs">${tabs.map(([id, label]) => html`<a class=${current === id ? "active" : ""} href="${base}/${id}">${label}</a>`)}</div>
    ${current === "partitions" ? html`<${Partitions} name=${name} />` : null}
    ${current === "configs" ? html`<${TopicConfigs} name=${name} />` : null}
    ${current === "produce" ? html`<${Produce} name=${name} />` : null}
    ${current === "messages" ? html`<${Messages} name=${name} />` : null}`;
}

function Partitions({ name }) {
  const [topic, err] = usePoll(`/topics/${encodeURIComponent(name)}`);
  return html`<${Err} error=${err} />${topic ? html`<table id="partitions"><thead><tr><th>Partition</th><th>Leader</th><th>Replicas</th><th>ISR</th>
    <th class="num">Log start</th><th class="num">High watermark</th><th class="num">Size</th></tr></thead>
    <tbody>${topic.partitions.map((p) => html`<tr><td>${p.partition}</td><td class=${p.leader === null ? "bad" : ""}>${p.leader ?? "offline"}</td>
      <td>${p.replicas.join(", ")}</td><td class=${p.isr.length < p.replicas.length ? "bad" : ""}>${p.isr.join(", ")}</td>
      <td class="num">${fmtNum(p.log_start_offset)}</td><td class="num">${fmtNum(p.high_watermark)}</td><td class="num">${fmtBytes(p.size_bytes)}</td></tr>`)}</tbody></table>` : html`<p class="muted">Loading…</p>`}`;
}

function TopicConfigs({ name }) {
  const path = `/topics/${encodeURIComponent(name)}/configs`;
  const [configs, err, reload] = usePoll(path, 10000);
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [msg, setMsg] = useState(null);
  const [patchErr, setPatchErr] = useState(null);
  const patch = async (body) => {
    setPatchErr(null); setMsg(null);
    try { await call("PATCH", path, body); setMsg("Saved."); reload(); } catch (e) { setPatchErr(e.message); }
  };
  return html`<${Err} error=${err || patchErr} />${msg ? html`<div class="notice">${msg}</div>` : null}
    ${configs ? html`<${ConfigTable} configs=${configs.configs} onDelete=${(k) => patch({ delete: [k] })} />` : html`<p class="muted">Loading…</p>`}
    <form class="inline" onSubmit=${(e) => { e.preventDefault(); patch({ set: { [key]: value } }); }}>
      <label>Setting<input value=${key} placeholder="retention.ms" onInput=${(e) => setKey(e.target.value)} required /></label>
      <label>Value<input value=${value} onInput=${(e) => setValue(e.target.value)} required /></label>
      <button type="submit">Set</button></form>`;
}

function Produce({ name }) {
  const [form, setForm] = useState({ key: "", value: "", headers: "", partition: "" });
  const [result, setResult] = useState(null);
  const [err, setErr] = useState(null);
  const [clusters] = usePoll("/rest/v3/clusters", 60000);
  const send = async (e) => {
    e.preventDefault();
    setErr(null); setResult(null);
    const clusterId = clusters && clusters.data[0] && clusters.data[0].cluster_id;
    if (!clusterId) { setErr("The cluster id is not known yet; try again in a moment."); return; }
    const headers = [];
    for (const line of form.headers.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const i = line.indexOf("=");
      if (i < 1) { setErr(`header "${line}" is not name=value`); return; }
      headers.push({ name: line.slice(0, i), value: utf8ToB64(line.slice(i + 1)) });
    }
    const record = { value: { type: "STRING", data: form.value }, headers };
    if (form.key !== "") record.key = { type: "STRING", data: form.key };
    if (form.partition !== "") record.partition_id = Number(form.partition);
    try {
      const r = await call("POST", `/rest/v3/clusters/${clusterId}/topics/${encodeURIComponent(name)}/records`, record);
      if (r.error_code !== 200) throw new Error(r.message);
      setResult(`Written to partition ${r.partition_id} at offset ${r.offset}.`);
    } catch (e) { setErr(e.message); }
  };
  const field = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  return html`<form class="inline" id="produce" onSubmit=${send}>
      <label>Key<input name="key" value=${form.key} onInput=${field("key")} /></label>
      <label>Value<textarea name="value" value=${form.value} onInput=${field("value")}></textarea></label>
      <label>Headers (name=value per line)<textarea name="headers" value=${form.headers} onInput=${field("headers")}></textarea></label>
      <label>Partition (empty: by key)<input name="partition" type="number" min="0" value=${form.partition} onInput=${field("partition")} /></label>
      <button type="submit">Produce</button></form>
    <${Err} error=${err} />${result ? html`<div class="notice" id="produce-result">${result}</div>` : null}`;
}

function RecordTable({ records, filter }) {
  const shown = records.filter((r) => {
    if (!filter) return true;
    const text = [r.keyText, r.valueText, ...r.headers.map((h) => `${h.key}=${h.text}`)].join("\n");
    return text.toLowerCase().includes(filter.toLowerCase());
  });
  if (!shown.length) return html`<p class="muted" id="no-records">No records${filter ? " match the filter" : ""}.</p>`;
  return html`<table id="records"><thead><tr><th class="num">Partition</th><th class="num">Offset</th><th>Timestamp</th><th>Key</th><th>Value</th><th>Headers</th></tr></thead>
    <tbody>${shown.map((r) => html`<tr key=${`${r.partition}-${r.offset}`}><td class="num">${r.partition}</td><td class="num">${r.offset}</td>
      <td>${fmtTime(r.timestamp)}</td><td>${r.keyText ?? html`<span class="muted">null</span>`}</td>
      <td><pre class="value">${r.valueText === null ? "null (tombstone)" : pretty(r.valueText)}</pre></td>
      <td>${r.headers.map((h) => html`<div>${h.key}=${h.text ?? "null"}</div>`)}</td></tr>`)}</tbody></table>`;
}

const toRecord = (r) => ({
  partition: r.partition, offset: r.offset, timestamp: r.timestamp,
  keyText: decodeText(r.key), valueText: decodeText(r.value),
  headers: (r.headers || []).map((h) => ({ key: h.key, text: decodeText(h.value) })),
});

function Messages({ name }) {
  const [topic] = usePoll(`/topics/${encodeURIComponent(name)}`, 15000);
  const [from, setFrom] = useState("beginning");
  const [partition, setPartition] = useState("all");
  const [offset, setOffset] = useState("0");
  const [when, setWhen] = useState("");
  const [filter, setFilter] = useState("");
  const [records, setRecords] = useState([]);
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [live, setLive] = useState(false);
  const [liveState, setLiveState] = useState(null);
  const source = useRef(null);

  const stopLive = () => { if (source.current) { source.current.close(); source.current = null; } setLive(false); setLiveState(null); };
  useEffect(() => stopLive, [name]);

  const startLive = () => {
    setErr(null); setRecords([]); setLive(true); setLiveState("connecting…");
    const es = new EventSource(`/console/live/${encodeURIComponent(name)}`);
    source.current = es;
    es.addEventListener("open", () => setLiveState("live: new records appear as they are written"));
    es.addEventListener("record", (e) => setRecords((rs) => [toRecord(JSON.parse(e.data)), ...rs].slice(0, 500)));
    es.addEventListener("dropped", (e) => setLiveState(`live: ${e.data} records skipped, too many to show`));
    es.addEventListener("failure", (e) => { setErr(e.data); stopLive(); });
    es.onerror = () => { if (es.readyState === EventSource.CLOSED) { setErr("The live stream closed; the coordinator may have restarted or too many live views are open."); stopLive(); } };
  };

  const load = async () => {
    stopLive();
    setErr(null); setBusy(true); setRecords([]);
    const group = `tributary-console-${Math.random().toString(36).slice(2, 10)}`;
    const inst = `/rest/consumers/${group}/instances/browser`;
    try {
      await call("POST", `/rest/consumers/${group}`, { name: "browser", format: "binary", "auto.commit.enable": "false", "auto.offset.reset": "earliest" });
      const parts = (topic ? topic.partitions : [{ partition: 0 }]).filter((p) => partition === "all" || String(p.partition) === partition);
      await call("POST", `${inst}/assignments`, { partitions: parts.map((p) => ({ topic: name, partition: p.partition })) });
      const refs = parts.map((p) => ({ topic: name, partition: p.partition }));
      if (from === "beginning") await call("POST", `${inst}/positions/beginning`, { partitions: refs });
      else if (from === "end") await call("POST", `${inst}/positions`, { offsets: parts.map((p) => ({ topic: name, partition: p.partition, offset: Math.max(p.log_start_offset ?? 0, (p.high_watermark ?? 0) - 50) })) });
      else if (from === "offset") await call("POST", `${inst}/positions`, { offsets: refs.map((r) => ({ ...r, offset: Math.max(0, Number(offset)) })) });
      else await call("POST", `${inst}/positions`, { timestamps: refs.map((r) => ({ ...r, timestamp: new Date(when).toISOString() })) });
      let got = [];
      for (let i = 0; i < 4 && got.length < 200; i++) {
        const batch = await call("GET", `${inst}/records?timeout=800&max_bytes=1000000`);
        got = got.concat(batch.map(toRecord));
        if (!batch.length && i > 0) break;
      }
      got.sort((a, b) => (from === "end" ? b.timestamp - a.timestamp : a.partition - b.partition || a.offset - b.offset));
      setRecords(got);
    } catch (e) { setErr(e.message); }
    finally { call("DELETE", inst).catch(() => {}); setBusy(false); }
  };

  return html`<div class="toolbar">
      <label>From<select id="from" value=${from} onChange=${(e) => setFrom(e.target.value)}>
        <option value="beginning">the beginning</option><option value="end">the end (last 50 per partition)</option>
        <option value="offset">an offset</option><option value="timestamp">a time</option></select></label>
      <label>Partition<select value=${partition} onChange=${(e) => setPartition(e.target.value)}>
        <option value="all">all</option>${(topic ? topic.partitions : []).map((p) => html`<option value=${String(p.partition)}>${p.partition}</option>`)}</select></label>
      ${from === "offset" ? html`<label>Offset<input type="number" min="0" value=${offset} onInput=${(e) => setOffset(e.target.value)} /></label>` : null}
      ${from === "timestamp" ? html`<label>Time<input type="datetime-local" step="1" value=${when} onInput=${(e) => setWhen(e.target.value)} /></label>` : null}
      <button id="load" onClick=${load} disabled=${busy || (from === "timestamp" && !when)}>${busy ? "Loading…" : "Load"}</button>
      ${live ? html`<button id="live" class="danger" onClick=${stopLive}>Stop live</button>` : html`<button id="live" class="secondary" onClick=${startLive}>Live</button>`}
      <label>Filter<input id="filter" value=${filter} placeholder="text in key, value or headers" onInput=${(e) => setFilter(e.target.value)} /></label>
    </div>
    ${liveState ? html`<p class="live" id="live-state">${liveState}</p>` : null}
    <${Err} error=${err} />
    <${RecordTable} records=${records} filter=${filter} />`;
}

function Groups() {
  const [groups, err] = usePoll("/groups");
  return html`<h1>Consumer groups</h1><${Err} error=${err} />
    ${groups && groups.errors.length ? html`<div class="error">Some brokers did not answer: ${groups.errors.map((e) => `broker ${e.broker}: ${e.error}`).join("; ")}</div>` : null}
    ${groups ? (groups.groups.length ? html`<table id="groups"><thead><tr><th>Group</th><th>State</th><th>Protocol</th><th>Coordinator</th></tr></thead>
      <tbody>${groups.groups.map((g) => html`<tr><td><a href="#/groups/${encodeURIComponent(g.group_id)}">${g.group_id}</a></td><td>${g.state}</td><td>${g.protocol_type}</td><td>${g.coordinator}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">No consumer groups yet.</p>`) : html`<p class="muted">Loading…</p>`}`;
}

function LagChart({ points }) {
  const el = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    if (!el.current || typeof uPlot === "undefined") return;
    const data = [points.map((p) => p[0]), points.map((p) => p[1])];
    if (!plot.current) {
      plot.current = new uPlot({ width: Math.min(900, el.current.clientWidth || 900), height: 220, scales: { x: { time: true } },
        series: [{}, { label: "total lag", stroke: "#2563eb", width: 2 }], axes: [{}, { label: "records" }] }, data, el.current);
    } else plot.current.setData(data);
  }, [points]);
  useEffect(() => () => { if (plot.current) { plot.current.destroy(); plot.current = null; } }, []);
  return html`<div class="chart" id="lag-chart" ref=${el}></div>`;
}

function Group({ id }) {
  const path = `/groups/${encodeURIComponent(id)}`;
  const [group, err, reload] = usePoll(path, 3000);
  const [history, setHistory] = useState([]);
  useEffect(() => { if (group) setHistory((h) => [...h, [Date.now() / 1000, group.total_lag]].slice(-600)); }, [group]);
  const [reset, setReset] = useState({ topic: "", to: "earliest", timestamp: "", offset: "0" });
  const [resetErr, setResetErr] = useState(null);
  const [resetMsg, setResetMsg] = useState(null);
  const doReset = async (e) => {
    e.preventDefault();
    setResetErr(null); setResetMsg(null);
    const body = { to: reset.to };
    if (reset.topic) body.topic = reset.topic;
    if (reset.to === "timestamp") body.timestamp = new Date(reset.timestamp).toISOString();
    if (reset.to === "offset") body.offset = Number(reset.offset);
    try {
      const r = await call("POST", `${path}/offsets/reset`, body);
      setResetMsg(`Reset ${r.offsets.length} partition(s): ${r.offsets.map((o) => `${o.topic}-${o.partition} → ${o.offset}`).join(", ")}.`);
      reload();
    } catch (e) { setResetErr(e.message); }
  };
  const topics = group ? [...new Set(group.offsets.map((o) => o.topic))] : [];
  return html`<h1>Group ${id}</h1><${Err} error=${err} />
    ${group ? html`<div class="cards">
        <div class="card"><div class="label">State</div><div class="value" id="group-state">${group.state}</div></div>
        <div class="card"><div class="label">Members</div><div class="value">${group.members.length}</div></div>
        <div class="card"><div class="label">Total lag</div><div class="value" id="total-lag">${fmtNum(group.total_lag)}</div></div>
        <div class="card"><div class="label">Coordinator</div><div class="value">${group.coordinator}</div></div></div>
      <h2>Total lag over time</h2><${LagChart} points=${history} />
      <h2>Members</h2>
      ${group.members.length ? html`<table><thead><tr><th>Member</th><th>Client</th><th>Host</th><th>Assignment</th></tr></thead>
        <tbody>${group.members.map((m) => html`<tr><td>${m.member_id}</td><td>${m.client_id}</td><td>${m.client_host}</td>
          <td>${m.assignment.map((a) => `${a.topic}-${a.partition}`).join(", ") || "–"}</td></tr>`)}</tbody></table>` : html`<p class="muted">No members: the group is inactive.</p>`}
      <h2>Committed offsets</h2>
      <table id="offsets"><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed</th><th class="num">End</th><th class="num">Lag</th></tr></thead>
        <tbody>${group.offsets.map((o) => html`<tr><td>${o.topic}</td><td class="num">${o.partition}</td><td class="num">${fmtNum(o.committed_offset)}</td>
          <td class="num">${fmtNum(o.log_end_offset)}</td><td class="num">${fmtNum(o.lag)}</td></tr>`)}</tbody></table>
      <h2>Reset offsets</h2>
      <form class="inline" id="reset" onSubmit=${doReset}>
        <label>Topic<select name="topic" value=${reset.topic} onChange=${(e) => setReset({ ...reset, topic: e.target.value })}>
          <option value="">every topic with offsets</option>${topics.map((t) => html`<option value=${t}>${t}</option>`)}</select></label>
        <label>To<select name="to" value=${reset.to} onChange=${(e) => setReset({ ...reset, to: e.target.value })}>
          <option value="earliest">earliest</option><option value="latest">latest</option><option value="timestamp">a time</option><option value="offset">an offset</option></select></label>
        ${reset.to === "timestamp" ? html`<label>Time<input type="datetime-local" step="1" required value=${reset.timestamp} onInput=${(e) => setReset({ ...reset, timestamp: e.target.value })} /></label>` : null}
        ${reset.to === "offset" ? html`<label>Offset<input type="number" min="0" value=${reset.offset} onInput=${(e) => setReset({ ...reset, offset: e.target.value })} /></label>` : null}
        <button type="submit">Reset offsets</button></form>
      <${Err} error=${resetErr} />${resetMsg ? html`<div class="notice" id="reset-result">${resetMsg}</div>` : null}` : html`<p class="muted">Loading…</p>`}`;
}

// ---- shell -----------------------------------------------------------------------------

function App() {
  const hash = useHash();
  const parts = hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  let page;
  let section = parts[0] || "";
  if (section === "") page = html`<${Overview} />`;
  else if (section === "topics" && parts[1]) page = html`<${Topic} name=${parts[1]} tab=${parts[2]} />`;
  else if (section === "topics") page = html`<${Topics} />`;
  else if (section === "groups" && parts[1]) page = html`<${Group} id=${parts[1]} />`;
  else if (section === "groups") page = html`<${Groups} />`;
  else if (section === "brokers") page = html`<${Brokers} />`;
  else page = html`<div class="error">There is no page ${hash}. <a href="#/">Back to the overview</a>.</div>`;
  const link = (href, label, id) => html`<a href=${href} class=${section === id ? "active" : ""}>${label}</a>`;
  return html`<header><span class="brand">Tributary</span><nav>
      ${link("#/", "Overview", "")}${link("#/topics", "Topics", "topics")}${link("#/groups", "Consumer groups", "groups")}${link("#/brokers", "Brokers", "brokers")}
    </nav></header><main>${page}</main>`;
}

const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
