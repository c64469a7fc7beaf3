// earmark: ask for the microphone as it is. Gradio requests getUserMedia({audio: true}),
// and Chrome then applies echo cancellation, noise suppression and automatic gain:
// a steady sound fades to near silence within seconds, and the room sounds people want
// classified are removed as "noise". This wraps getUserMedia so every audio request made
// by the page turns the three off (explicit constraints passed by a caller still win).
(() => {
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia || media.__earmarkRaw) return;
  const raw = media.getUserMedia.bind(media);
  const off = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  media.__earmarkRaw = raw;
  media.getUserMedia = (constraints) => {
    if (constraints && constraints.audio) {
      const audio = constraints.audio === true ? {} : constraints.audio;
      constraints = { ...constraints, audio: { ...off, ...audio } };
    }
    return raw(constraints);
  };
})();
