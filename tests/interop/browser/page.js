// Browser side of the anywt interop harness (see harness.py for the contract).
//
// Fetches /config.json, runs each step against the WebTransport server with
// the W3C API, and POSTs {step, ok, detail, ms} to /result after each one,
// then {done: true, ok} at the end. Every wait is bounded by a timeout so a
// stuck server shows up as a failed step, not a hung browser.
"use strict";

const cfg = await fetch("/config.json").then((r) => r.json());
const enc = new TextEncoder();
const dec = new TextDecoder();

// --- plumbing ---------------------------------------------------------------

function show(line) {
  document.getElementById("log").textContent += line + "\n";
  console.log(line); // reaches chromium's stderr with --enable-logging=stderr
}

async function post(path, body) {
  // keepalive lets the last POST finish even if the page is torn down.
  await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    keepalive: true,
  });
}

function log(message) {
  show(message);
  return post("/log", { message: String(message) }).catch(() => {});
}

window.addEventListener("error", (e) => log(`page error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => log(`unhandled rejection: ${describe(e.reason).message}`));

/** A failure with structured detail for the report. */
class StepFailure extends Error {
  constructor(message, detail = {}) {
    super(message);
    this.name = "StepFailure";
    this.detail = detail;
  }
}

/** Plain-object description of any thrown value (WebTransportError included). */
function describe(err) {
  if (err === undefined || err === null) return { message: String(err) };
  const out = { name: err.name, message: err.message ?? String(err) };
  for (const key of ["source", "streamErrorCode", "closeCode", "reason"]) {
    if (err[key] !== undefined && err[key] !== null) out[key] = err[key];
  }
  if (err.detail !== undefined) out.detail = err.detail;
  return out;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepFailure(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const T = cfg.step_timeout_ms;

/** Deterministic test bytes: a tag, then a counter pattern. */
function payload(size, tag) {
  const out = new Uint8Array(size);
  const head = enc.encode(tag);
  out.set(head.subarray(0, size));
  for (let i = head.length; i < size; i++) out[i] = (i * 31 + 7) & 0xff;
  return out;
}

function concat(chunks) {
  const total = chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(total);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.byteLength;
  }
  return out;
}

function sameBytes(a, b) {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Read a ReadableStream of bytes to its end (the peer's FIN). */
async function readAll(readable) {
  const reader = readable.getReader();
  const chunks = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  reader.releaseLock();
  return concat(chunks);
}

/** Write bytes then FIN. */
async function writeAll(writable, bytes) {
  const writer = writable.getWriter();
  await writer.write(bytes);
  await writer.close();
}

function certOptions() {
  if (!cfg.cert_sha256) return {}; // e.g. the SPKI-flag mode
  return { serverCertificateHashes: [{ algorithm: "sha-256", value: new Uint8Array(cfg.cert_sha256) }] };
}

/** One WebTransport session plus lazily-taken readers for incoming streams. */
class Session {
  constructor(wt) {
    this.wt = wt;
    this.uniReader = null;
    this.bidiReader = null;
    this.closeInfo = null;
    this.closed = wt.closed.then(
      (info) => (this.closeInfo = { clean: true, closeCode: info.closeCode, reason: info.reason }),
      (err) => (this.closeInfo = { clean: false, error: describe(err) }),
    );
  }

  static async open(extra = {}) {
    const t0 = performance.now();
    const wt = new WebTransport(cfg.url, { ...certOptions(), ...extra });
    const session = new Session(wt);
    try {
      await withTimeout(wt.ready, T, "ready");
    } catch (err) {
      try { wt.close(); } catch (_) { /* already failed */ }
      throw err;
    }
    session.readyMs = Math.round(performance.now() - t0);
    return session;
  }

  async nextUni() {
    this.uniReader ??= this.wt.incomingUnidirectionalStreams.getReader();
    const { value, done } = await withTimeout(this.uniReader.read(), T, "incoming uni stream");
    if (done) throw new StepFailure("no more incoming uni streams");
    return value;
  }

  async nextBidi() {
    this.bidiReader ??= this.wt.incomingBidirectionalStreams.getReader();
    const { value, done } = await withTimeout(this.bidiReader.read(), T, "incoming bidi stream");
    if (done) throw new StepFailure("no more incoming bidi streams");
    return value;
  }

  async echoBidi(bytes) {
    const stream = await withTimeout(this.wt.createBidirectionalStream(), T, "createBidirectionalStream");
    // Write and read concurrently so a large echo cannot deadlock on flow control.
    const [, got] = await withTimeout(
      Promise.all([writeAll(stream.writable, bytes), readAll(stream.readable)]),
      T,
      "bidi echo",
    );
    return got;
  }

  async close(code = 0, reason = "") {
    try {
      this.wt.close({ closeCode: code, reason });
    } catch (_) {
      /* already closed */
    }
    await withTimeout(this.closed, T, "closed");
    return this.closeInfo;
  }
}

// The session most steps share; opened by "ready" or on first use.
let shared = null;
async function sharedSession() {
  if (shared === null || shared.closeInfo !== null) shared = await Session.open(cfg.protocols ? { protocols: cfg.protocols } : {});
  return shared;
}

// --- steps --------------------------------------------------------------------
// Each returns a detail object on success and throws on failure. The optional
// argument comes from "name:arg" in the step list.

const STEPS = {
  async ready() {
    const s = await sharedSession();
    return {
      ready_ms: s.readyMs,
      protocol: s.wt.protocol,
      maxDatagramSize: s.wt.datagrams?.maxDatagramSize,
      reliability: s.wt.reliability,
      congestionControl: s.wt.congestionControl,
    };
  },

  async bidi_echo(arg) {
    const size = Number(arg ?? 65536);
    const s = await sharedSession();
    const sent = payload(size, "bidi-echo:");
    const got = await s.echoBidi(sent);
    if (!sameBytes(sent, got)) throw new StepFailure("echo mismatch", { sent: sent.byteLength, got: got.byteLength });
    return { bytes: got.byteLength };
  },

  async uni_echo(arg) {
    const size = Number(arg ?? 16384);
    const s = await sharedSession();
    const sent = payload(size, "uni-echo:");
    const out = await withTimeout(s.wt.createUnidirectionalStream(), T, "createUnidirectionalStream");
    await withTimeout(writeAll(out, sent), T, "uni write");
    const incoming = await s.nextUni();
    const got = await withTimeout(readAll(incoming), T, "uni read");
    if (!sameBytes(sent, got)) throw new StepFailure("echo mismatch", { sent: sent.byteLength, got: got.byteLength });
    return { bytes: got.byteLength };
  },

  async server_bidi() {
    // Trigger: a bidi stream carrying "open-bidi" (echoed like any other);
    // the server then opens a bidi stream carrying cfg.server_bidi_payload
    // and FIN. We read it all and write the same bytes back, then FIN.
    const s = await sharedSession();
    const echo = await s.echoBidi(enc.encode("open-bidi"));
    const stream = await s.nextBidi();
    const got = await withTimeout(readAll(stream.readable), T, "server bidi read");
    const text = dec.decode(got);
    if (text !== cfg.server_bidi_payload) throw new StepFailure("unexpected payload", { got: text });
    await withTimeout(writeAll(stream.writable, got), T, "server bidi reply");
    return { payload: text, trigger_echo: dec.decode(echo) };
  },

  async datagram_echo(arg) {
    // Datagrams are unreliable: resend until one echo arrives, bounded.
    const attempts = Number(arg ?? 30);
    const s = await sharedSession();
    const writer = s.wt.datagrams.writable.getWriter();
    const reader = s.wt.datagrams.readable.getReader();
    try {
      let pending = reader.read();
      pending.catch(() => {}); // releaseLock() below may reject a read still pending
      for (let i = 1; i <= attempts; i++) {
        const sent = `dgram-${i}`;
        await withTimeout(writer.write(enc.encode(sent)), T, "datagram write");
        const tick = sleep(100).then(() => null);
        const res = await Promise.race([pending, tick]);
        if (res === null) continue; // nothing yet: send another
        if (res.done) throw new StepFailure("datagram stream ended");
        const text = dec.decode(res.value);
        if (text.startsWith("dgram-")) return { attempts: i, echo: text, maxDatagramSize: s.wt.datagrams.maxDatagramSize };
        pending = reader.read();
        pending.catch(() => {});
      }
      throw new StepFailure(`no echo after ${attempts} datagrams`);
    } finally {
      writer.releaseLock();
      reader.releaseLock();
    }
  },

  async abort_stream(arg) {
    // Abort both halves of a bidi stream with streamErrorCode 7 (or arg).
    // The server should see RESET_STREAM and STOP_SENDING with the mapped
    // code 0x52e4a40fa8db + n + floor(n / 0x1e) (0x52e4a40fa8e2 for 7).
    const code = Number(arg ?? 7);
    const s = await sharedSession();
    const stream = await withTimeout(s.wt.createBidirectionalStream(), T, "createBidirectionalStream");
    const writer = stream.writable.getWriter();
    const reader = stream.readable.getReader();
    await withTimeout(writer.write(enc.encode("abort-me")), T, "write");
    // Wait for the echo so the server has surely seen the stream.
    const first = await withTimeout(reader.read(), T, "echo before abort");
    let err;
    let ctor = "message+options";
    try {
      err = new WebTransportError("aborted by page", { source: "stream", streamErrorCode: code });
      if (err.streamErrorCode !== code) throw new Error("options form ignored");
    } catch (_) {
      ctor = "init-dict";
      err = new WebTransportError({ message: "aborted by page", streamErrorCode: code });
    }
    await withTimeout(Promise.all([writer.abort(err), reader.cancel(err)]), T, "abort");
    await sleep(50); // let RESET_STREAM / STOP_SENDING leave before the next step
    const wire = 0x52e4a40fa8dbn + BigInt(code) + BigInt(Math.floor(code / 0x1e));
    return {
      streamErrorCode: code,
      errorStreamErrorCode: err.streamErrorCode,
      expected_wire_code: "0x" + wire.toString(16),
      constructor: ctor,
      echoed_before_abort: first.value ? dec.decode(first.value) : null,
    };
  },

  async close_from_page() {
    const s = await Session.open();
    const info = await s.close(4242, "bye from page");
    if (!info.clean) throw new StepFailure("closed rejected", info);
    return info;
  },

  async close_from_server() {
    // The server closes the session with the code and reason we send.
    const s = await Session.open();
    const stream = await withTimeout(s.wt.createBidirectionalStream(), T, "createBidirectionalStream");
    // The server may close the session before our FIN is acknowledged, which
    // rejects writer.close(); only the session's closed promise matters here.
    const writing = writeAll(stream.writable, enc.encode("close:4343:bye from server")).then(
      () => null,
      (err) => describe(err),
    );
    await withTimeout(s.closed, T, "closed");
    const writeError = await withTimeout(writing, T, "write close command");
    const info = s.closeInfo;
    if (!info.clean || info.closeCode !== 4343 || info.reason !== "bye from server") {
      throw new StepFailure("unexpected close", { ...info, writeError });
    }
    return { ...info, writeError };
  },

  async protocols() {
    const offered = cfg.protocols ?? ["echo-v1", "echo-v0"];
    const s = await Session.open({ protocols: offered });
    const chosen = s.wt.protocol;
    await s.close(0, "");
    if (!offered.includes(chosen)) throw new StepFailure("protocol not negotiated", { offered, protocol: chosen });
    return { offered, protocol: chosen };
  },

  async sessions_in_a_row(arg) {
    const count = Number(arg ?? 3);
    const runs = [];
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      const s = await Session.open();
      const sent = payload(1000, `session-${i}:`);
      const got = await s.echoBidi(sent);
      if (!sameBytes(sent, got)) throw new StepFailure(`echo mismatch in session ${i}`, { runs });
      const info = await s.close(0, "");
      runs.push({ ready_ms: s.readyMs, total_ms: Math.round(performance.now() - t0), close: info });
    }
    return { sessions: count, runs };
  },
};

// --- runner -------------------------------------------------------------------

let allOk = true;
const started = performance.now();
for (const spec of cfg.steps) {
  const colon = spec.indexOf(":");
  const name = colon < 0 ? spec : spec.slice(0, colon);
  const arg = colon < 0 ? undefined : spec.slice(colon + 1);
  const t0 = performance.now();
  let result;
  try {
    const fn = STEPS[name];
    if (!fn) throw new StepFailure(`unknown step ${name}`);
    // The step's own waits are bounded; this is a backstop for the whole step.
    const detail = await withTimeout(fn(arg), T * 4, name);
    result = { step: spec, ok: true, detail };
  } catch (err) {
    result = { step: spec, ok: false, detail: describe(err) };
    // A step that failed may have left the shared session unusable.
    if (shared !== null && shared.closeInfo !== null) shared = null;
  }
  result.ms = Math.round(performance.now() - t0);
  allOk &&= result.ok;
  show(`${result.ok ? "PASS" : "FAIL"} ${spec} ${JSON.stringify(result.detail)}`);
  await post("/result", result);
}
if (shared !== null && shared.closeInfo === null) {
  await shared.close(0, "done").catch((err) => log(`final close: ${describe(err).message}`));
}
await post("/result", { done: true, ok: allOk, ms: Math.round(performance.now() - started) });
// Closing the only tab lets headless Chromium exit on its own, which also
// finishes the net-log file; the harness kills it anyway if it does not.
window.close();
