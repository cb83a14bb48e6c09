// Browser microphone for workbench: the front end of workbench.ui.recorder.BrowserRecorder.
//
// getUserMedia -> AudioWorklet (ScriptProcessor where there is none) -> mono float blocks
// -> windowed-sinc resampler to 16 kHz -> int16 little-endian -> one custom message per
// `chunk_s` of audio (1 s = 32 KB, far below Jupyter's 10 MB message limit):
//
//   {type: "start", take, rate: 16000, input_rate}
//   {type: "chunk", take, seq, n}            + one ArrayBuffer of n int16 samples
//   {type: "stop",  take, chunks, samples, reason, elapsed}   (elapsed: page clock, seconds)
//   {type: "error", code, message}
//
// Audio travels only in custom messages, never in a synced trait, so it is never part of
// the widget state that a notebook can save. The kernel answers {type: "result", take, ok,
// message}, and sends {type: "reset"} when the page moves to another sentence: the last
// take's message and Play button go (a take being recorded is not touched). The level meter,
// timer and local playback live in the page only.

export const RATE = 16000; // Hz, what the kernel expects

const MESSAGES = {
  insecure:
    "The browser blocked the microphone because this page is not a secure context. " +
    "Browsers allow the microphone only on https:// pages or on http://localhost (this computer). " +
    "Open Jupyter through an https:// address or on localhost, or record with another program and use the upload button.",
  denied:
    "The browser was not allowed to use the microphone. Click the microphone (or lock) icon next to the " +
    "address, allow the microphone for this page, then press Record again. " +
    "(Browsers allow the microphone only on https:// pages or on http://localhost.)",
  no_device:
    "The browser found no microphone. Plug one in (or pick it in the system's sound settings), then press Record again.",
  busy:
    "The microphone is in use by another program or blocked by the system. Close the other program, then press Record again.",
  ended: "The microphone stopped (was it unplugged?). The part recorded so far was sent.",
};

// AudioWorklet code, loaded from a Blob URL: it averages the input channels and posts
// blocks of 2048 samples (about 43 ms at 48 kHz) to the page, each with the context frame
// just after its last sample (so the page can cut the take at the moment Stop was pressed);
// "flush" posts the rest.
const WORKLET = `
class WorkbenchTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new Float32Array(2048);
    this.n = 0;
    this.end = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") { this.post(); this.port.postMessage("flushed"); }
    };
  }
  post() {
    if (this.n > 0) { this.port.postMessage({ samples: this.buf.slice(0, this.n), end: this.end }); this.n = 0; }
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const nch = input.length, len = input[0].length;
      for (let i = 0; i < len; i++) {
        let s = 0;
        for (let c = 0; c < nch; c++) s += input[c][i];
        this.buf[this.n++] = s / nch;
        this.end = currentFrame + i + 1;
        if (this.n === this.buf.length) this.post();
      }
    }
    return true;
  }
}
registerProcessor("workbench-tap", WorkbenchTap);
`;

/**
 * Streaming resampler: Hann-windowed sinc low-pass at 0.45 * outRate, evaluated at the
 * output instants (n * inRate / outRate input samples). Output n is centred on input
 * time n / outRate, so `ceil(total_in * outRate / inRate)` samples come out after flush().
 */
export class Resampler {
  constructor(inRate, outRate = RATE, zeros = 10) {
    this.step = inRate / outRate; // input samples per output sample
    this.nu = Math.min(1, outRate / inRate) * 0.9; // cutoff, fraction of the input Nyquist
    this.half = Math.ceil(zeros / this.nu); // kernel half-width, input samples
    this.base = -this.half; // absolute input index of buf[0]; zeros before the start
    this.buf = new Float32Array(this.half);
    this.n = 0; // next output index
    this.total = 0; // input samples pushed
    this.period = 0; // outputs after which the kernel phases repeat (0: never cached)
    for (let q = 1; q <= 1000; q++) {
      const p = this.step * q;
      if (Math.abs(p - Math.round(p)) < 1e-9) { this.period = q; break; }
    }
    this.cache = new Map();
  }

  _taps(frac) {
    // weights for input offsets -half+1 .. half around floor(p), frac = p - floor(p)
    const taps = new Float64Array(2 * this.half);
    for (let j = 0; j < taps.length; j++) {
      const d = frac - (j - this.half + 1);
      const w = 0.5 + 0.5 * Math.cos((Math.PI * d) / this.half);
      const x = Math.PI * this.nu * d;
      taps[j] = (Math.abs(x) < 1e-12 ? this.nu : (this.nu * Math.sin(x)) / x) * w;
    }
    return taps;
  }

  _drain(limit) {
    const end = this.base + this.buf.length; // one past the last input sample held
    const out = [];
    while (out.length < limit) {
      const p = this.n * this.step;
      const i0 = Math.floor(p);
      if (i0 + this.half >= end) break;
      let taps;
      if (this.period) {
        const key = this.n % this.period;
        taps = this.cache.get(key);
        if (!taps) { taps = this._taps(p - i0); this.cache.set(key, taps); }
      } else {
        taps = this._taps(p - i0);
      }
      let s = 0;
      const off = i0 - this.half + 1 - this.base;
      for (let j = 0; j < taps.length; j++) s += this.buf[off + j] * taps[j];
      out.push(s);
      this.n++;
    }
    const keepFrom = Math.floor(this.n * this.step) - this.half + 1;
    if (keepFrom > this.base) {
      this.buf = this.buf.slice(Math.min(keepFrom - this.base, this.buf.length));
      this.base = keepFrom;
    }
    return Float32Array.from(out);
  }

  _append(x) {
    const joined = new Float32Array(this.buf.length + x.length);
    joined.set(this.buf);
    joined.set(x, this.buf.length);
    this.buf = joined;
  }

  push(x) {
    this._append(x);
    this.total += x.length;
    return this._drain(Infinity);
  }

  flush() {
    const want = Math.ceil(this.total / this.step) - this.n;
    this._append(new Float32Array(this.half + 2));
    return this._drain(Math.max(0, want));
  }
}

/** float [-1, 1] -> int16 little-endian bytes, the rounding of workbench.audio.float_to_pcm16. */
export function toPcm16(x) {
  const buf = new ArrayBuffer(2 * x.length);
  const view = new DataView(buf);
  for (let i = 0; i < x.length; i++) {
    const v = Math.max(-32768, Math.min(32767, Math.round(x[i] * 32768)));
    view.setInt16(2 * i, v, true);
  }
  return buf;
}

function levelDb(x) {
  let ms = 0;
  for (let i = 0; i < x.length; i++) ms += x[i] * x[i];
  ms = x.length ? ms / x.length : 0;
  return 10 * Math.log10(Math.max(ms, 1e-12));
}

function errorCode(err) {
  const name = (err && err.name) || "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "denied";
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") return "no_device";
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") return "busy";
  return "other";
}

function errorMessage(code, err) {
  if (MESSAGES[code]) return MESSAGES[code];
  const what = err ? `${err.name || "Error"}: ${err.message || err}` : "unknown error";
  return `The browser could not start recording (${what}). Reload the page and try again, or use the upload button.`;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function render({ model, el: root }) {
  root.classList.add("wb-recorder");
  root.dataset.state = "idle";
  const bar = el("div", "wb-rec-bar");
  const recordBtn = el("button", "wb-rec-record", "● Record");
  const stopBtn = el("button", "wb-rec-stop", "■ Stop");
  const playBtn = el("button", "wb-rec-play", "▶ Play");
  const meter = el("div", "wb-rec-meter");
  const meterFill = el("div", "wb-rec-meter-fill");
  const time = el("span", "wb-rec-time", "0:00");
  const READY = "Press Record, read the sentence, then press Stop.";
  const status = el("div", "wb-rec-status", READY);
  for (const b of [recordBtn, stopBtn, playBtn]) b.type = "button";
  recordBtn.title = "Record with this browser's microphone";
  meter.title = "Input level";
  meter.appendChild(meterFill);
  bar.append(recordBtn, stopBtn, playBtn, meter, time);
  root.append(bar, status);

  let rec = null; // the recording in progress
  let lastTake = null; // {id, pcm: [ArrayBuffer...]} for local playback
  let player = null;
  let forgotten = null; // the id of the take a reset cleared

  function setStatus(text, kind = "") {
    status.textContent = text;
    status.className = "wb-rec-status" + (kind ? ` wb-rec-${kind}` : "");
  }

  function setState(state) {
    root.dataset.state = state;
    const disabled = Boolean(model.get("disabled"));
    recordBtn.disabled = disabled || state !== "idle";
    stopBtn.disabled = state !== "recording";
    playBtn.disabled = state !== "idle" || !lastTake;
  }

  function fail(code, err) {
    const message = errorMessage(code, err);
    setStatus(message, "error");
    root.dataset.error = code;
    model.send({ type: "error", code, message });
    setState("idle");
  }

  function sendChunk(samples) {
    const pcm = toPcm16(samples);
    const seq = rec.seq++;
    rec.pcm.push(pcm);
    rec.samples += samples.length;
    model.send({ type: "chunk", take: rec.id, seq, n: samples.length }, undefined, [pcm]);
  }

  function emit(y) {
    // y: float32 at 16 kHz; sends whole chunks, keeps the remainder pending
    if (!y.length) return;
    const room = rec.maxSamples - rec.samples - rec.pendingLength;
    if (room <= 0) return;
    const part = y.length > room ? y.subarray(0, room) : y;
    rec.pending.push(part);
    rec.pendingLength += part.length;
    while (rec.pendingLength >= rec.chunkSamples) {
      const all = concat(rec.pending, rec.pendingLength);
      sendChunk(all.subarray(0, rec.chunkSamples));
      const rest = all.slice(rec.chunkSamples);
      rec.pending = rest.length ? [rest] : [];
      rec.pendingLength = rest.length;
    }
    if (!rec.closing && rec.samples + rec.pendingLength >= rec.maxSamples) stop("limit");
  }

  function concat(parts, n) {
    const out = new Float32Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }

  function onBlock(x, end) {
    if (!rec || rec.done) return;
    if (end !== undefined && rec.stopFrame !== undefined) {
      // audio that reached the worklet after Stop was pressed is not part of the take
      const keep = Math.max(0, Math.min(x.length, rec.stopFrame - (end - x.length)));
      if (keep < x.length) x = x.subarray(0, keep);
      if (!x.length) return;
    }
    rec.level = levelDb(x);
    emit(rec.resampler.push(x));
  }

  function tick() {
    if (!rec) return;
    const db = Math.max(-60, Math.min(0, rec.level));
    meterFill.style.width = `${((db + 60) / 60) * 100}%`;
    meterFill.classList.toggle("wb-rec-hot", db > -3);
    time.textContent = clock((performance.now() - rec.startedAt) / 1000);
  }

  async function start() {
    if (rec || root.dataset.state !== "idle") return;
    delete root.dataset.error;
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail("insecure");
      return;
    }
    setState("starting");
    setStatus("Starting the microphone…");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      fail(errorCode(err), err);
      return;
    }
    const r = {
      id: Math.random().toString(36).slice(2, 10),
      stream, seq: 0, samples: 0, pcm: [], pending: [], pendingLength: 0, level: -120, closing: false, done: false,
      chunkSamples: Math.max(1600, Math.round(RATE * (Number(model.get("chunk_s")) || 1))),
      maxSamples: Math.round(RATE * (Number(model.get("max_s")) || 60)),
    };
    let worklet = null;
    try {
      r.ctx = new AudioContext();
      if (r.ctx.state === "suspended") await r.ctx.resume();
      r.source = r.ctx.createMediaStreamSource(stream);
      r.mute = r.ctx.createGain();
      r.mute.gain.value = 0; // keep the graph pulled without echoing the microphone
      r.mute.connect(r.ctx.destination);
      if (r.ctx.audioWorklet && typeof AudioWorkletNode === "function") {
        const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
        try {
          await r.ctx.audioWorklet.addModule(url);
          worklet = new AudioWorkletNode(r.ctx, "workbench-tap");
        } catch (err) {
          worklet = null; // e.g. a strict Content-Security-Policy: fall back below
        } finally {
          URL.revokeObjectURL(url);
        }
      }
      if (worklet) {
        worklet.port.onmessage = (e) => {
          if (e.data === "flushed") { if (r.flushed) r.flushed(); }
          else onBlock(e.data.samples, e.data.end);
        };
        r.node = worklet;
      } else {
        r.node = r.ctx.createScriptProcessor(4096, 1, 1);
        r.node.onaudioprocess = (e) => onBlock(new Float32Array(e.inputBuffer.getChannelData(0)));
      }
      r.resampler = new Resampler(r.ctx.sampleRate);
      r.source.connect(r.node);
      r.node.connect(r.mute);
    } catch (err) {
      for (const t of stream.getTracks()) t.stop();
      if (r.ctx) r.ctx.close();
      fail("other", err);
      return;
    }
    rec = r;
    rec.method = worklet ? "worklet" : "scriptprocessor";
    for (const t of stream.getAudioTracks()) t.onended = () => stop("ended");
    model.send({ type: "start", take: rec.id, rate: RATE, input_rate: rec.ctx.sampleRate, method: rec.method });
    rec.startedAt = performance.now();
    rec.timer = setInterval(tick, 100); // the meter: about 10 updates a second
    root.dataset.method = rec.method;
    root.dataset.inputRate = String(rec.ctx.sampleRate);
    setState("recording");
    setStatus("Recording… press Stop when the sentence is finished.", "live");
  }

  async function stop(reason = "button") {
    if (!rec || rec.closing) return;
    const r = rec;
    r.closing = true; // blocks still in flight are kept up to the moment of Stop; no second stop
    r.elapsed = (performance.now() - r.startedAt) / 1000;
    if (r.node.port && reason !== "limit") r.stopFrame = Math.round(r.ctx.currentTime * r.ctx.sampleRate);
    setState("stopping");
    if (r.node.port) {
      // collect what the worklet still holds (at most one block), then detach
      await Promise.race([
        new Promise((resolve) => { r.flushed = resolve; r.node.port.postMessage("flush"); }),
        new Promise((resolve) => setTimeout(resolve, 500)),
      ]);
    }
    clearInterval(r.timer);
    emit(r.resampler.flush());
    r.done = true;
    try { r.source.disconnect(); r.node.disconnect(); } catch (err) { /* already gone */ }
    for (const t of r.stream.getTracks()) { t.onended = null; t.stop(); }
    r.ctx.close();
    if (r.pendingLength) sendChunk(concat(r.pending, r.pendingLength));
    r.pending = [];
    r.pendingLength = 0;
    model.send({ type: "stop", take: r.id, chunks: r.seq, samples: r.samples, reason, elapsed: r.elapsed });
    lastTake = { id: r.id, pcm: r.pcm, samples: r.samples };
    rec = null;
    meterFill.style.width = "0%";
    time.textContent = clock(r.samples / RATE);
    root.dataset.samples = String(r.samples);
    root.dataset.chunks = String(r.seq);
    setState("idle");
    const note = reason === "limit" ? `Stopped at the ${Math.round(r.maxSamples / RATE)} s limit. ` : reason === "ended" ? MESSAGES.ended + " " : "";
    setStatus(`${note}Checking the recording…`);
  }

  async function play() {
    if (!lastTake || !lastTake.samples) return;
    if (player) { try { player.close(); } catch (err) { /* closed */ } }
    player = new AudioContext();
    const buffer = player.createBuffer(1, lastTake.samples, RATE);
    const data = buffer.getChannelData(0);
    let o = 0;
    for (const pcm of lastTake.pcm) {
      const view = new DataView(pcm);
      for (let i = 0; i < pcm.byteLength / 2; i++) data[o++] = view.getInt16(2 * i, true) / 32768;
    }
    const src = player.createBufferSource();
    src.buffer = buffer;
    src.connect(player.destination);
    src.start();
  }

  function onMessage(msg) {
    if (msg && msg.type === "reset" && root.dataset.state === "idle") {
      forgotten = lastTake ? lastTake.id : forgotten; // its late answer is not shown either
      lastTake = null;
      delete root.dataset.result;
      setStatus(READY);
      setState("idle");
      return;
    }
    if (!msg || msg.type !== "result") return;
    if (lastTake && msg.take && msg.take !== lastTake.id) return; // an older take
    if (!lastTake && msg.take && msg.take === forgotten) return; // the take before a reset
    setStatus(msg.message || "", msg.ok ? "ok" : "bad");
    root.dataset.result = msg.ok ? "ok" : "bad";
  }
  const onDisabled = () => setState(root.dataset.state);

  recordBtn.addEventListener("click", start);
  stopBtn.addEventListener("click", () => stop("button"));
  playBtn.addEventListener("click", play);
  model.on("msg:custom", onMessage);
  model.on("change:disabled", onDisabled);
  setState("idle");

  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:disabled", onDisabled);
    if (rec) stop("closed");
    if (player) { try { player.close(); } catch (err) { /* closed */ } }
  };
}

export default { render };
