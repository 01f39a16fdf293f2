// CameraStream front end: webcam -> JPEG frames (binary buffers) -> kernel -> DCF function -> drawn here.
// At most `window` frames are in flight. When the window is full the next frame waits for a free slot (and is
// captured fresh then); further frames meanwhile are dropped and counted, so a slow function lowers the frame
// rate instead of growing a queue.

const STATS_EVERY_MS = 250;
const BUTTON = "jupyter-widgets jupyter-button widget-button";
const SYNC_EVERY_MS = 1000;
const LATENCY_SAMPLES = 120;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function median(values) {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function overlap(a, b) {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  return width > 0 && height > 0 ? width * height : 0;
}

// Where each caption goes, as dcf_jupyter.boxes() places them (notebook/_display.py, place_captions): above its
// box, else inside its top, below it, inside its bottom, left- then right-aligned, then stacked further out; the
// first spot that hides no caption placed before (the least hidden when all do), inside the canvas. The kernel
// sends the most confident box first.
function placeCaptions(boxes, sizes, width, height) {
  const placed = [];
  boxes.forEach(({ x0, y0, x1, y1 }, i) => {
    const [w, h] = sizes[i];
    const rows = [y0 - h, y0, y1, y1 - h];
    for (const k of [1, 2, 3]) rows.push(y0 - h * (k + 1), y1 + h * k);
    let best = null;
    let bestHidden = Infinity;
    search: for (const y of rows) {
      for (const x of [x0, x1 - w]) {
        const left = Math.min(Math.max(0, x), Math.max(0, width - w));
        const top = Math.min(Math.max(0, y), Math.max(0, height - h));
        const spot = [left, top, left + w, top + h];
        const hidden = placed.reduce((sum, other) => sum + overlap(spot, other), 0);
        if (hidden < bestHidden) [best, bestHidden] = [spot, hidden];
        if (hidden === 0) break search;
      }
    }
    placed.push(best);
  });
  return placed;
}

function drawBoxes(ctx, boxes) {
  const line = Math.max(2, Math.round(Math.min(ctx.canvas.width, ctx.canvas.height) / 160));
  ctx.lineWidth = line;
  ctx.font = `${Math.max(12, Math.round(ctx.canvas.height / 32))}px sans-serif`;
  ctx.textBaseline = "top";
  for (const box of boxes) {
    ctx.strokeStyle = box.color;
    ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  }
  const height = parseInt(ctx.font, 10) + 6;
  const sizes = boxes.map((box) => [ctx.measureText(box.caption).width + 8, height]);
  placeCaptions(boxes, sizes, ctx.canvas.width, ctx.canvas.height).forEach(([left, top, right, bottom], i) => {
    ctx.fillStyle = boxes[i].color;
    ctx.fillRect(left, top, right - left, bottom - top);
    ctx.fillStyle = "#000";
    ctx.fillText(boxes[i].caption, left + 4, top + 3);
  });
}

// Why the camera did not start, in one sentence, with the way around it: a video file's frames (VideoStream).
export function cameraProblem(err, fn) {
  const clip = `a video file's frames with VideoStream(${JSON.stringify(fn || "FUNCTION")}, "clip.mp4")`;
  const name = (err && err.name) || "";
  if (typeof navigator === "undefined" || !navigator.mediaDevices) {
    return `This page cannot use a camera (browsers allow one only over HTTPS or on localhost): stream ${clip}.`;
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return `No camera was found: this browser sees none. Stream ${clip} instead.`;
  }
  if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
    return "The browser did not allow the camera: allow it for this page (the camera icon in the address bar), "
      + `or stream ${clip}.`;
  }
  if (name === "NotReadableError" || name === "TrackStartError") {
    return `The camera is busy (another program or tab has it): close that, or stream ${clip}.`;
  }
  return `The camera did not start (${(err && err.message) || err}): stream ${clip} instead.`;
}

function render({ model, el }) {
  const view = Math.random().toString(36).slice(2);
  el.classList.add("dcf-camera");

  const bar = element("div", "dcf-bar");
  // ipywidgets' own button classes: the same look as VideoStream's buttons, in light and dark themes.
  const start = element("button", `${BUTTON} dcf-start`, "▶ Start");
  const stop = element("button", `${BUTTON} dcf-stop`, "■ Stop");
  const chooser = element("label", "dcf-chooser", "camera ");
  const cameras = element("select", "dcf-cameras");
  const any = element("option", "", "default");  // the browser names its cameras once you allow one
  any.value = "";  // no deviceId: the browser's choice
  cameras.append(any);
  chooser.append(cameras);
  const title = element("span", "dcf-function");
  const stats = element("span", "dcf-stats", "stopped: Start opens your camera (the browser asks first)");
  bar.append(start, stop, chooser, title, stats);
  const stage = element("div", "dcf-stage");
  const output = element("canvas", "dcf-output");
  stage.append(output);
  const text = element("pre", "dcf-text");
  const error = element("div", "dcf-error");
  el.append(bar, stage, text, error);

  const video = element("video");
  video.muted = true;
  video.playsInline = true;
  // OffscreenCanvas.convertToBlob encodes on a background thread right away; a DOM canvas's toBlob waits for
  // the page's idle time, which adds tens of milliseconds while the notebook is busy drawing replies.
  const grab = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(1, 1) : element("canvas");
  const out = output.getContext("2d");

  let media = null;
  let timer = null;
  let syncTimer = null;
  let statsTimer = null;
  let streaming = false;
  let nextId = 0;
  let inFlight = 0;
  let owed = false;
  let sent = 0;
  let received = 0;
  let dropped = 0;
  const pending = new Map(); // frame id -> {t, jpeg}
  const latencies = [];
  // [encode, kernel and Jupyter messaging, function (gateway + worker), decode + draw] ms, for the stats tooltip
  const phases = [];
  const arrivals = [];

  function setState(running) {
    start.disabled = running;
    stop.disabled = !running;
    el.dataset.running = running ? "1" : "0";
  }

  function fps() {
    const now = performance.now();
    while (arrivals.length && now - arrivals[0] > 2000) arrivals.shift();
    if (arrivals.length < 2) return 0;
    return (arrivals.length - 1) / ((arrivals[arrivals.length - 1] - arrivals[0]) / 1000);
  }

  function showStats() {
    const rate = fps();
    const p50 = median(latencies);
    // Stopped by a problem, the problem's sentence says it all: the hint about Start would contradict it.
    stats.textContent = streaming || received
      ? `${rate.toFixed(1)} fps · p50 ${p50.toFixed(0)} ms · ${received}/${sent} frames · ${dropped} dropped`
      : (error.textContent ? "stopped" : "stopped: Start opens your camera (the browser asks first)");
    const [encode, kernel, fn, draw] = [0, 1, 2, 3].map((i) => median(phases.map((p) => p[i])));
    stats.title = `p50: encode ${encode.toFixed(1)} ms, kernel ${kernel.toFixed(1)} ms, `
      + `function ${fn.toFixed(1)} ms, decode and draw ${draw.toFixed(1)} ms`;
    Object.assign(el.dataset, {
      sent, received, dropped, fps: rate.toFixed(2), latency: p50.toFixed(1),
      encode: encode.toFixed(1), kernel: kernel.toFixed(1), function: fn.toFixed(1), draw: draw.toFixed(1),
    });
  }

  function syncStats() {
    model.set({
      frames_sent: sent, frames_received: received, frames_dropped: dropped,
      fps_measured: Math.round(fps() * 100) / 100, latency_ms: Math.round(median(latencies) * 10) / 10,
    });
    model.save_changes();
  }

  async function listCameras(selected) {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    cameras.replaceChildren(...devices.map((d, i) => {
      const option = element("option", "", d.label || `camera ${i + 1}`);
      option.value = d.deviceId;
      return option;
    }));
    if (selected) cameras.value = selected;
  }

  function tick() {
    if (!streaming) return;
    schedule();
    if (video.readyState < 2) return;
    if (inFlight < model.get("window")) {
      capture();
    } else {
      // The window is full: the freshest frame goes as soon as a slot frees (no waiting for the next tick);
      // a tick that finds one already waiting is a dropped frame.
      if (owed) dropped += 1;
      owed = true;
    }
  }

  function freed() {
    inFlight = Math.max(0, inFlight - 1);
    if (owed && streaming && inFlight < model.get("window")) {
      owed = false;
      capture();
    }
  }

  async function capture() {
    inFlight += 1;
    const id = nextId++;
    const t = performance.now();
    try {
      const w = model.get("width");
      const h = model.get("height");
      if (grab.width !== w || grab.height !== h) Object.assign(grab, { width: w, height: h });
      grab.getContext("2d").drawImage(video, 0, 0, w, h);
      const quality = model.get("quality");
      const blob = grab.convertToBlob
        ? await grab.convertToBlob({ type: "image/jpeg", quality })
        : await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", quality));
      const buffer = await blob.arrayBuffer();
      if (!streaming) { inFlight = Math.max(0, inFlight - 1); return; }
      // The JPEG itself is kept, not a decoded copy: only box and text replies need the frame decoded again.
      pending.set(id, { t, sent: performance.now(), jpeg: blob });
      model.send({ type: "frame", view, id }, undefined, [buffer]);
      sent += 1;
    } catch (err) {
      inFlight -= 1;
      fail(`could not capture a frame: ${err}`);
    }
  }

  function schedule() {
    timer = setTimeout(tick, 1000 / Math.max(1, model.get("fps")));
  }

  function size(width, height) {
    if (output.width !== width || output.height !== height) Object.assign(output, { width, height });
    el.dataset.drawn = "1";  // the stage shows from the first frame on: no empty canvas before Start
  }

  async function paint(blob) {
    const bitmap = await createImageBitmap(blob);
    size(bitmap.width, bitmap.height);
    out.drawImage(bitmap, 0, 0);
    bitmap.close();
  }

  async function show(msg, buffers) {
    const frame = pending.get(msg.id);
    pending.delete(msg.id);
    freed();
    if (!frame) return;
    const arrived = performance.now();
    if (msg.kind === "image") {
      await paint(new Blob([buffers[0]], { type: msg.mime }));
    } else {
      await paint(frame.jpeg);
      if (msg.kind === "boxes") {
        drawBoxes(out, msg.boxes);
        el.dataset.boxes = String(msg.boxes.length);
      }
    }
    text.textContent = msg.kind === "text" ? msg.text : "";
    // Round trip as the user sees it: from grabbing the camera frame to its reply drawn.
    received += 1;
    const now = performance.now();
    arrivals.push(now);
    latencies.push(now - frame.t);
    const fn = msg.function_ms || 0;
    phases.push([frame.sent - frame.t, arrived - frame.sent - fn, fn, now - arrived]);
    if (latencies.length > LATENCY_SAMPLES) latencies.shift();
    if (phases.length > LATENCY_SAMPLES) phases.shift();
  }

  function fail(message) {
    error.textContent = message;
    halt(false);
  }

  function halt(tellKernel) {
    streaming = false;
    clearTimeout(timer);
    if (media) media.getTracks().forEach((track) => track.stop());
    media = null;
    pending.clear();
    inFlight = 0;
    owed = false;
    if (tellKernel) model.send({ type: "stop", view });
    setState(false);
    showStats();
    syncStats();
  }

  async function begin() {
    error.textContent = "";
    setState(true);
    try {
      const device = cameras.value;
      media = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: {
          width: { ideal: model.get("width") }, height: { ideal: model.get("height") },
          ...(device ? { deviceId: { exact: device } } : {}),
        },
      });
      video.srcObject = media;
      await video.play();
      await listCameras(media.getVideoTracks()[0].getSettings().deviceId);
    } catch (err) {
      fail(cameraProblem(err, model.get("function")));
      return;
    }
    sent = received = dropped = 0;
    latencies.length = 0;
    phases.length = 0;
    arrivals.length = 0;
    model.send({ type: "start", view });
  }

  model.on("msg:custom", (msg, buffers) => {
    if (msg.view !== view) return;
    if (msg.type === "started") {
      streaming = true;
      schedule();
    } else if (msg.type === "result") {
      show(msg, buffers).catch((err) => fail(`could not show a reply: ${err}`));
    } else if (msg.type === "dropped") {
      pending.delete(msg.id);
      dropped += 1;
      freed();
    } else if (msg.type === "error") {
      fail(msg.message);
    } else if (msg.type === "stop") {
      halt(false);
    }
  });

  function describe() {
    title.textContent = model.get("function") ? `→ ${model.get("function")}` : "→ kernel loopback";
  }
  model.on("change:function", describe);
  describe();

  start.addEventListener("click", () => begin());
  stop.addEventListener("click", () => halt(true));
  cameras.addEventListener("change", () => { if (media) { halt(true); begin(); } });
  statsTimer = setInterval(showStats, STATS_EVERY_MS);
  syncTimer = setInterval(() => { if (streaming) syncStats(); }, SYNC_EVERY_MS);
  setState(false);
  showStats();
  if (model.get("autostart")) begin();

  return () => {
    clearInterval(statsTimer);
    clearInterval(syncTimer);
    halt(true);
  };
}

export default { render };
