// earmark: the page's microphone.
//
// 1. Ask for the microphone as it is. Gradio requests getUserMedia({audio: true}), and Chrome
//    then applies echo cancellation, noise suppression and automatic gain: a steady sound fades
//    to near silence within seconds, and the room sounds people want classified are removed as
//    "noise". Every audio request made by the page turns the three off (explicit constraints
//    passed by a caller still win).
// 2. Do not start the Live tab's recorder before it exists. Gradio's streaming microphone loads
//    its recorder (extendable-media-recorder and a WAV encoder in a worker) in the background
//    when the component mounts, and a record press before that finished fails inside Gradio
//    with "TypeError: ge is not a constructor" (nothing records, no message). The recorder is
//    ready once its worker has registered the WAV encoder (the worker answers with the encoder's
//    MIME-type pattern); until then the page's getUserMedia waits (15 s at most).
// 3. Send the Live tab's audio in one-second pieces. That recorder hands out a piece of WAV about
//    every 100 ms whatever the component's stream_every says, and Gradio uploads each piece and
//    posts it to the running event at once: ~20 requests a second, and a piece that arrives while
//    the server handles the one before replaces it (the audio is lost, the live view falls
//    behind). The pieces are joined here and handed on once a second (the first one keeps the
//    WAV header, the rest are raw samples, as they came).
(() => {
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia || media.__earmarkRaw) return;
  const raw = media.getUserMedia.bind(media);
  const off = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const READY_WAIT_MS = 15000;
  let ready = false;
  const waiting = [];
  const markReady = () => {
    if (ready) return;
    ready = true;
    // a task later: Gradio's own promise chain that keeps the recorder class runs first
    setTimeout(() => waiting.splice(0).forEach((go) => go()), 0);
  };
  const NativeWorker = window.Worker;
  if (NativeWorker) {
    class EarmarkWorker extends NativeWorker {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (e) => {
          const result = e.data && e.data.result;
          if (result instanceof RegExp) markReady();
        });
      }
    }
    window.Worker = EarmarkWorker;
  }
  const recorderReady = () => {
    if (ready || !document.querySelector("#em-live-mic")) return Promise.resolve();
    return new Promise((go) => {
      waiting.push(go);
      setTimeout(go, READY_WAIT_MS);
    });
  };
  const COALESCE_MS = 1000;
  const NativeRecorder = window.MediaRecorder;
  const addListener = EventTarget.prototype.addEventListener;
  EventTarget.prototype.addEventListener = function (type, listener, options) {
    const streamed = type === "dataavailable" && typeof listener === "function" &&
      !(NativeRecorder && this instanceof NativeRecorder);
    if (!streamed) return addListener.call(this, type, listener, options);
    let parts = [];
    let timer = null;
    const flush = () => {
      timer = null;
      if (!parts.length) return;
      const data = new Blob(parts, { type: parts[0].type });
      parts = [];
      listener.call(this, { type, data });
    };
    return addListener.call(this, type, (event) => {
      if (!event.data || !event.data.size) return;
      parts.push(event.data);
      if (timer === null) timer = setTimeout(flush, COALESCE_MS);
    }, options);
  };
  media.__earmarkRaw = raw;
  media.__earmarkRecorderReady = () => ready;
  media.getUserMedia = async (constraints) => {
    if (constraints && constraints.audio) {
      const audio = constraints.audio === true ? {} : constraints.audio;
      constraints = { ...constraints, audio: { ...off, ...audio } };
      await recorderReady();
    }
    return raw(constraints);
  };
})();
