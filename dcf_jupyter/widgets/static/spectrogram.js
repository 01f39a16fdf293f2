// Spectrogram front end: record from the microphone (MediaRecorder), decode to PCM, send a 16-bit WAV to the
// kernel as a binary buffer; the kernel computes the spectrogram with a DCF function and sets `image`.

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function wav(samples, rate) {
  // Mono 16-bit PCM: the smallest WAV every STFT handler reads.
  const data = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) data.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); data.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); data.setUint32(16, 16, true); data.setUint16(20, 1, true); data.setUint16(22, 1, true);
  data.setUint32(24, rate, true); data.setUint32(28, rate * 2, true); data.setUint16(32, 2, true);
  data.setUint16(34, 16, true); text(36, "data"); data.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    data.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return data.buffer;
}

function mixdown(audio) {
  const mono = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    const channel = audio.getChannelData(c);
    for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / audio.numberOfChannels;
  }
  return mono;
}

function render({ model, el }) {
  el.classList.add("dcf-spectrogram");
  const bar = element("div", "dcf-bar");
  const record = element("button", "jupyter-widgets jupyter-button widget-button dcf-record", "● Record");
  const seconds = element("input", "dcf-seconds");
  Object.assign(seconds, { type: "number", min: "0.5", max: "60", step: "0.5", title: "seconds to record" });
  const unit = element("span", "", "s →");
  const target = element("span", "dcf-function");
  const status = element("span", "dcf-status");
  bar.append(record, seconds, unit, target, status);
  const plot = element("div", "dcf-plot");
  const picture = element("img");
  plot.append(picture);
  const error = element("div", "dcf-error");
  el.append(bar, plot, error);
  let url = null;

  function refresh() {
    seconds.value = String(model.get("seconds"));
    target.textContent = model.get("function");
    status.textContent = model.get("status");
    error.textContent = model.get("error");
    const image = model.get("image");
    if (image && image.byteLength) {
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(new Blob([image], { type: model.get("image_mime") }));
      picture.src = url;
    }
    el.dataset.plots = String(model.get("plots"));
  }

  async function recordAudio() {
    error.textContent = "";
    record.disabled = true;
    let media = null;
    try {
      media = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      const recorder = new MediaRecorder(media);
      const chunks = [];
      recorder.ondataavailable = (event) => chunks.push(event.data);
      const stopped = new Promise((resolve) => { recorder.onstop = resolve; });
      recorder.start();
      status.textContent = `recording ${model.get("seconds")} s…`;
      await new Promise((resolve) => setTimeout(resolve, model.get("seconds") * 1000));
      recorder.stop();
      await stopped;
      const context = new AudioContext();
      const audio = await context.decodeAudioData(await new Blob(chunks).arrayBuffer());
      await context.close();
      status.textContent = "sending…";
      model.send({ type: "audio" }, undefined, [wav(mixdown(audio), audio.sampleRate)]);
    } catch (err) {
      error.textContent = `could not record: ${err.message || err}`;
    } finally {
      if (media) media.getTracks().forEach((track) => track.stop());
      record.disabled = false;
    }
  }

  seconds.addEventListener("change", () => {
    model.set("seconds", Math.max(0.5, Number(seconds.value) || 3));
    model.save_changes();
  });
  record.addEventListener("click", () => recordAudio());
  for (const name of ["image", "plots", "status", "error", "function", "seconds"]) model.on(`change:${name}`, refresh);
  refresh();
  return () => { if (url) URL.revokeObjectURL(url); };
}

export default { render };
