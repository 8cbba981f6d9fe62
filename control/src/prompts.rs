//! Prompt audio for the call runner: text-to-speech, audio files, and silence, all as
//! [`Pcm8k`] (linear PCM, 8,000 Hz, mono), the one format a dataplane core plays.
//!
//! Speech comes from `espeak-ng` run as a subprocess (a process boundary keeps its GPL-3.0
//! code out of our binary and contains its crashes): plain text as text, and SSML prompts
//! with `-m` after rewriting them into the SSML subset espeak-ng 1.51 renders. Audio files
//! are fetched over HTTP and decoded from WAV. Both are converted to 8 kHz by a
//! Kaiser-windowed sinc low-pass resampler, so nothing above 4 kHz folds into the telephone
//! band, and kept in one bounded LRU cache; concurrent requests for the same prompt render it
//! once.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::fetch::{FetchError, Fetcher};

/// Linear 16-bit PCM at 8,000 Hz, mono.
pub type Pcm8k = outdial_dataplane::api::Pcm8k;

/// The sample rate of [`Pcm8k`].
pub const OUTPUT_RATE: u32 = 8_000;

/// Sample rates [`decode_wav`] accepts. The floor bounds how much a file can grow when it is
/// converted to 8 kHz (at most fourfold); the ceiling bounds the resampler's filter length.
pub const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 2_000..=384_000;

/// Longest [`PromptRenderer::silence`] returned; longer requests are cut to this.
pub const MAX_SILENCE: Duration = Duration::from_secs(60);

/// How long the TTS command may run before it is killed.
pub const DEFAULT_TTS_TIMEOUT: Duration = Duration::from_secs(10);

/// Default size of the prompt cache, in bytes of samples.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// How much of the TTS command's stderr is kept for an error message.
const STDERR_KEPT: usize = 2_048;

/// Why a WAV file cannot be decoded.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum WavError {
    /// The bytes do not start with a RIFF/WAVE header.
    #[error("not a WAV file (no RIFF/WAVE header); serve PCM, µ-law or A-law audio in a WAV file")]
    NotWav,
    /// A chunk declares more bytes than the file holds.
    #[error(
        "WAV file is truncated: its `{chunk}` chunk declares {declared} bytes but only {available} follow; re-export the file"
    )]
    Truncated {
        /// The chunk's four-character id.
        chunk: String,
        /// Bytes the chunk header declares.
        declared: usize,
        /// Bytes left in the file.
        available: usize,
    },
    /// A required chunk is absent.
    #[error("WAV file has no `{0}` chunk; re-export the file")]
    MissingChunk(&'static str),
    /// The `fmt ` chunk is inconsistent.
    #[error("WAV `fmt ` chunk is malformed: {0}; re-export the file")]
    BadFormat(&'static str),
    /// The encoding is not one we decode.
    #[error(
        "WAV encoding {tag:#06x} with {bits}-bit samples is not supported; convert to 16-bit PCM, µ-law or A-law"
    )]
    UnsupportedEncoding {
        /// The `wFormatTag` (or the extensible sub-format's tag).
        tag: u16,
        /// `wBitsPerSample`.
        bits: u16,
    },
    /// The sample rate is outside [`SUPPORTED_RATES`].
    #[error("WAV sample rate {0} Hz is outside 2,000 to 384,000 Hz; resample the file")]
    UnsupportedRate(u32),
}

/// Why a prompt cannot be rendered.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// The TTS command is not installed.
    #[error(
        "text-to-speech command `{command}` was not found; install espeak-ng (`apt-get install espeak-ng`) or configure the TTS command"
    )]
    TtsMissing {
        /// The command.
        command: String,
    },
    /// The TTS command exists but could not be started.
    #[error(
        "cannot start text-to-speech command `{command}`: {reason}; check that it is executable"
    )]
    TtsSpawn {
        /// The command.
        command: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The TTS command exited unsuccessfully.
    #[error(
        "text-to-speech command `{command}` failed ({status}): {stderr}; check that voice `{voice}` exists (`espeak-ng --voices`)"
    )]
    TtsFailed {
        /// The command.
        command: String,
        /// The voice asked for.
        voice: String,
        /// How it exited.
        status: String,
        /// The start of what it wrote to stderr.
        stderr: String,
    },
    /// The TTS command ran too long and was killed.
    #[error(
        "text-to-speech command `{command}` did not finish within {after:?} and was killed; shorten the prompt"
    )]
    TtsTimeout {
        /// The command.
        command: String,
        /// The time limit.
        after: Duration,
    },
    /// The TTS command succeeded but produced no audio.
    #[error(
        "text-to-speech command `{command}` produced no audio for {text:?}; check the text and the voice"
    )]
    TtsEmpty {
        /// The command.
        command: String,
        /// The start of the text.
        text: String,
    },
    /// The TTS command's output was larger than the audio limit.
    #[error("text-to-speech output is larger than {limit} bytes; shorten the prompt")]
    TtsTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The TTS command's output is not a WAV we can read.
    #[error(
        "text-to-speech output is not usable: {0}; check that the TTS command writes WAV to stdout"
    )]
    TtsOutput(#[source] WavError),
    /// An audio file could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// An SSML prompt is not an SSML document.
    #[error("SSML prompt cannot be read: {reason}; send a well-formed <speak> document")]
    BadSsml {
        /// What is wrong with it.
        reason: String,
    },
    /// A fetched audio file could not be decoded.
    #[error("audio `{url}` cannot be played: {source}")]
    BadAudio {
        /// The URL fetched.
        url: String,
        /// Why it cannot be decoded.
        #[source]
        source: WavError,
    },
    /// Bytes given to [`decode_wav`] could not be decoded.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// Conversion was abandoned, because the runtime is shutting down.
    #[error("audio conversion was interrupted; the server is shutting down")]
    Interrupted,
}

/// Renders prompts to [`Pcm8k`] and caches them. Cheap to clone; clones share the cache.
#[derive(Clone, Debug)]
pub struct PromptRenderer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tts_command: String,
    voice: String,
    fetcher: Fetcher,
    max_audio_bytes: usize,
    tts_timeout: Duration,
    cache: Mutex<Cache>,
}

impl PromptRenderer {
    /// A renderer that speaks with `tts_command` (an espeak-ng compatible CLI) in `voice`,
    /// fetches audio with `fetcher`, and refuses audio (fetched or synthesised) larger than
    /// `max_audio_bytes`.
    pub fn new(tts_command: &str, voice: &str, fetcher: Fetcher, max_audio_bytes: usize) -> Self {
        Self::build(
            tts_command,
            voice,
            fetcher,
            max_audio_bytes,
            DEFAULT_TTS_TIMEOUT,
            DEFAULT_CACHE_BYTES,
        )
    }

    /// The same renderer with a different TTS time limit (an empty cache of the same size).
    pub fn with_tts_timeout(&self, tts_timeout: Duration) -> Self {
        let cache_bytes = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .limit;
        self.with_limits(tts_timeout, cache_bytes)
    }

    /// The same renderer with a different TTS time limit and cache size (an empty cache).
    pub fn with_limits(&self, tts_timeout: Duration, cache_bytes: usize) -> Self {
        Self::build(
            &self.inner.tts_command,
            &self.inner.voice,
            self.inner.fetcher.clone(),
            self.inner.max_audio_bytes,
            tts_timeout,
            cache_bytes,
        )
    }

    fn build(
        tts_command: &str,
        voice: &str,
        fetcher: Fetcher,
        max_audio_bytes: usize,
        tts_timeout: Duration,
        cache_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                tts_command: tts_command.to_owned(),
                voice: voice.to_owned(),
                fetcher,
                max_audio_bytes,
                tts_timeout,
                cache: Mutex::new(Cache::new(cache_bytes)),
            }),
        }
    }

    /// Text → speech with the TTS command (`-v VOICE --stdout`, text on stdin, read as plain
    /// text even if it looks like markup), converted to 8 kHz mono. Rendered once and cached
    /// by (voice, text); concurrent requests for the same text render once. Blank text gives
    /// no audio without running the command.
    pub async fn speak(&self, text: &str) -> Result<Pcm8k, RenderError> {
        if text.trim().is_empty() {
            return Ok(Pcm8k::from([]));
        }
        let key = CacheKey::Speech {
            voice: self.inner.voice.clone(),
            text: text.to_owned(),
        };
        self.cached(key, || self.synthesize(text, Markup::Text))
            .await
    }

    /// An SSML 1.0 document → speech, as [`PromptRenderer::speak`] but read as SSML (`-m`)
    /// once rewritten into the SSML espeak-ng 1.51 renders (say-as, sub: see
    /// `espeak_ssml`). Cached by (voice, rewritten document). A document without words gives
    /// no audio without running the command.
    pub async fn speak_ssml(&self, ssml: &str) -> Result<Pcm8k, RenderError> {
        let Some(ssml) = espeak_ssml(ssml)? else {
            return Ok(Pcm8k::from([]));
        };
        let key = CacheKey::Ssml {
            voice: self.inner.voice.clone(),
            ssml: ssml.clone(),
        };
        self.cached(key, || self.synthesize(&ssml, Markup::Ssml))
            .await
    }

    /// Fetches a WAV file (PCM 8/16/24/32-bit, float, µ-law or A-law; any supported rate;
    /// channels mixed to mono) and converts it to 8 kHz. Cached by URL.
    pub async fn audio(&self, url: &str) -> Result<Pcm8k, RenderError> {
        let fetcher = self.inner.fetcher.clone();
        self.audio_via(&fetcher, "", url).await
    }

    /// [`Self::audio`] fetched with `fetcher` (a tenant's, keeping to its outbound-connection
    /// rules), cached under `scope` (the rules' key), so audio fetched under one set of rules
    /// is never served under another.
    pub async fn audio_via(
        &self,
        fetcher: &Fetcher,
        scope: &str,
        url: &str,
    ) -> Result<Pcm8k, RenderError> {
        let key = CacheKey::Audio {
            scope: scope.to_owned(),
            url: url.to_owned(),
        };
        self.cached(key, || async {
            let fetched = fetcher.get(url, self.inner.max_audio_bytes).await?;
            let decoded = convert(fetched.body, DataLength::Declared).await?;
            decoded.map_err(|source| RenderError::BadAudio {
                url: url.to_owned(),
                source,
            })
        })
        .await
    }

    /// A recording the session made (a WAV file from `<record>`), converted to 8 kHz for
    /// playback. Not cached: it belongs to one call.
    pub async fn recording(&self, clip: &outdial_vxml::Clip) -> Result<Pcm8k, RenderError> {
        let decoded = convert(clip.audio.to_vec(), DataLength::Declared).await?;
        decoded.map_err(|source| RenderError::BadAudio {
            url: format!("(recording of {} bytes)", clip.audio.len()),
            source,
        })
    }

    /// Silence of the given length (at most [`MAX_SILENCE`]).
    pub fn silence(duration: Duration) -> Pcm8k {
        let nanos = duration.min(MAX_SILENCE).as_nanos();
        let samples = nanos * u128::from(OUTPUT_RATE) / 1_000_000_000;
        // invariant: MAX_SILENCE is 60 s, so `samples` is at most 480,000.
        let samples = usize::try_from(samples).unwrap_or(0);
        Pcm8k::from(vec![0; samples])
    }

    /// Checks that the TTS command runs and speaks in the configured voice (for start-up).
    pub async fn check_tts(&self) -> Result<(), RenderError> {
        self.synthesize("ready", Markup::Text).await.map(drop)
    }

    /// Returns the cached prompt for `key`, rendering it with `render` if it is not cached.
    async fn cached<F, Fut>(&self, key: CacheKey, render: F) -> Result<Pcm8k, RenderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Pcm8k, RenderError>>,
    {
        let cell = self.cache().slot(&key);
        match cell.get_or_try_init(render).await {
            Ok(pcm) => {
                let pcm = pcm.clone();
                self.cache().settle(&key, &cell);
                Ok(pcm)
            }
            Err(error) => {
                self.cache().forget(&key, &cell);
                Err(error)
            }
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariant a panicking holder could break half-way that matters:
        // at worst its byte count is off until entries are evicted.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the TTS command once and converts its output.
    async fn synthesize(&self, text: &str, markup: Markup) -> Result<Pcm8k, RenderError> {
        let inner = &self.inner;
        let wav = tokio::time::timeout(inner.tts_timeout, self.run_tts(text, markup))
            .await
            .map_err(|_| RenderError::TtsTimeout {
                command: inner.tts_command.clone(),
                after: inner.tts_timeout,
            })??;
        let empty = || RenderError::TtsEmpty {
            command: inner.tts_command.clone(),
            text: text.chars().take(60).collect(),
        };
        if wav.is_empty() {
            return Err(empty());
        }
        let pcm = convert(wav, DataLength::ToEndOfFile)
            .await?
            .map_err(RenderError::TtsOutput)?;
        if pcm.is_empty() {
            return Err(empty());
        }
        Ok(pcm)
    }

    /// Runs the TTS command with `text` on stdin and returns its stdout. The child is killed
    /// if this future is dropped (on timeout).
    async fn run_tts(&self, text: &str, markup: Markup) -> Result<Vec<u8>, RenderError> {
        let inner = &self.inner;
        let mut command = Command::new(&inner.tts_command);
        command.arg("-v").arg(&inner.voice);
        if markup == Markup::Ssml {
            command.arg("-m");
        }
        command
            .arg("--stdout")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => RenderError::TtsMissing {
                command: inner.tts_command.clone(),
            },
            _ => RenderError::TtsSpawn {
                command: inner.tts_command.clone(),
                reason: e.to_string(),
            },
        })?;
        let stdin = child.stdin.take();
        let write = async move {
            if let Some(mut stdin) = stdin {
                // A command that exits without reading stdin (a bad voice) breaks the pipe;
                // its exit status says why, so a write error is not reported here.
                let _ = stdin.write_all(text.as_bytes()).await;
            }
        };
        let limit = inner.max_audio_bytes;
        let (_, stdout, stderr) = tokio::join!(
            write,
            read_capped(child.stdout.take(), limit),
            read_capped(child.stderr.take(), STDERR_KEPT),
        );
        let stdout = stdout.map_err(|e| RenderError::TtsSpawn {
            command: inner.tts_command.clone(),
            reason: e.to_string(),
        })?;
        if stdout.len() > limit {
            return Err(RenderError::TtsTooLarge { limit });
        }
        let status = child.wait().await.map_err(|e| RenderError::TtsSpawn {
            command: inner.tts_command.clone(),
            reason: e.to_string(),
        })?;
        if !status.success() {
            let stderr = stderr.unwrap_or_default();
            return Err(RenderError::TtsFailed {
                command: inner.tts_command.clone(),
                voice: inner.voice.clone(),
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(stdout)
    }
}

/// How the TTS command is to read its input.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Markup {
    /// Plain text: whatever looks like a tag is read as text.
    Text,
    /// An SSML document (`-m`).
    Ssml,
}

/// The XML namespace (`xml:lang`).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Rewrites an SSML 1.0 document into the SSML espeak-ng 1.51 renders, reducing the rest to
/// text. `<p>`, `<s>`, `<emphasis>`, `<prosody>`, `<voice>`, `<break>` and `xml:lang` stay.
/// `<sub>` becomes its alias. `<say-as>` becomes espeak-ng's `characters` for `characters`,
/// `spell-out`, `letters` and `digits` (and `number` in `format="digits"`), digits read one by
/// one for `telephone`, and its text otherwise (espeak-ng has no `date`, `time` or `currency`).
/// Other elements (`<mark>`, `<phoneme>`, `<audio>`, vendor elements) give their text.
/// espeak-ng does not decode references in attribute values, so `&`, `<`, `>` and `"` are
/// left out of them. `None` when the document has no words.
fn espeak_ssml(ssml: &str) -> Result<Option<String>, RenderError> {
    let document = roxmltree::Document::parse(ssml).map_err(|e| RenderError::BadSsml {
        reason: e.to_string(),
    })?;
    let root = document.root_element();
    if root.tag_name().name() != "speak" {
        return Err(RenderError::BadSsml {
            reason: format!(
                "its root element is <{}>, not <speak>",
                root.tag_name().name()
            ),
        });
    }
    let mut out = EspeakSsml::default();
    out.start("speak", root, &["xml:lang"]);
    out.children(root);
    out.end("speak");
    Ok(out.has_words.then_some(out.ssml))
}

/// The document [`espeak_ssml`] writes.
#[derive(Default)]
struct EspeakSsml {
    ssml: String,
    has_words: bool,
}

impl EspeakSsml {
    fn children(&mut self, node: roxmltree::Node<'_, '_>) {
        for child in node.children() {
            if child.is_text() {
                self.text(child.text().unwrap_or_default());
            } else if child.is_element() {
                self.element(child);
            }
        }
    }

    fn element(&mut self, node: roxmltree::Node<'_, '_>) {
        let name = node.tag_name().name();
        let attributes: &[&str] = match name {
            "p" | "s" => &["xml:lang"],
            "emphasis" => &["level"],
            "prosody" => &["pitch", "range", "rate", "volume"],
            "voice" => &["xml:lang", "gender", "age", "variant", "name"],
            "break" => {
                self.start("break", node, &["time", "strength"]);
                self.end("break");
                return;
            }
            "sub" => {
                match node.attribute("alias") {
                    Some(alias) => self.text(alias),
                    None => self.children(node),
                }
                return;
            }
            "say-as" => {
                self.say_as(node);
                return;
            }
            _ => {
                self.children(node);
                return;
            }
        };
        self.start(name, node, attributes);
        self.children(node);
        self.end(name);
    }

    /// `<say-as>` (SSML 1.0 §3.1.8) as far as espeak-ng can say it.
    fn say_as(&mut self, node: roxmltree::Node<'_, '_>) {
        let text: String = node
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect();
        let interpret_as = node
            .attribute("interpret-as")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let format = node.attribute("format").unwrap_or_default();
        match interpret_as.as_str() {
            "characters" | "spell-out" | "letters" => self.characters(&text),
            "digits" => self.characters(&text.split_whitespace().collect::<String>()),
            "number" if format.eq_ignore_ascii_case("digits") => {
                self.characters(&text.split_whitespace().collect::<String>());
            }
            "telephone" | "phone" => self.text(&one_by_one(&text)),
            _ => self.text(&text),
        }
    }

    /// espeak-ng's own spelling: `<say-as interpret-as="characters">`.
    fn characters(&mut self, text: &str) {
        self.ssml.push_str(r#"<say-as interpret-as="characters">"#);
        self.text(text);
        self.ssml.push_str("</say-as>");
    }

    fn start(&mut self, name: &str, node: roxmltree::Node<'_, '_>, attributes: &[&str]) {
        self.ssml.push('<');
        self.ssml.push_str(name);
        for &attribute in attributes {
            let value = match attribute {
                "xml:lang" => node.attribute((XML_NS, "lang")),
                _ => node.attribute(attribute),
            };
            if let Some(value) = value {
                self.ssml.push(' ');
                self.ssml.push_str(attribute);
                self.ssml.push_str("=\"");
                let value = value.replace(['&', '<', '>', '"'], "");
                self.ssml.push_str(value.trim());
                self.ssml.push('"');
            }
        }
        self.ssml.push('>');
    }

    fn end(&mut self, name: &str) {
        self.ssml.push_str("</");
        self.ssml.push_str(name);
        self.ssml.push('>');
    }

    fn text(&mut self, text: &str) {
        self.has_words |= !text.trim().is_empty();
        for c in text.chars() {
            match c {
                '&' => self.ssml.push_str("&amp;"),
                '<' => self.ssml.push_str("&lt;"),
                '>' => self.ssml.push_str("&gt;"),
                c => self.ssml.push(c),
            }
        }
    }
}

/// A telephone number as keys read one by one: "+1 (555) 010-9999" → "plus 1, 5 5 5, 0 1 0,
/// 9 9 9 9".
fn one_by_one(number: &str) -> String {
    let mut spoken = String::new();
    for c in number.chars() {
        match c {
            '+' => spoken.push_str("plus "),
            c if c.is_alphanumeric() || c == '*' || c == '#' => {
                spoken.push(c);
                spoken.push(' ');
            }
            _ => {
                if !spoken.is_empty() && !spoken.ends_with(", ") {
                    spoken.truncate(spoken.trim_end().len());
                    spoken.push_str(", ");
                }
            }
        }
    }
    spoken.trim_end_matches([' ', ',']).to_owned()
}

/// Reads `pipe` to its end, keeping at most `limit + 1` bytes (one more than allowed, so the
/// caller can tell the limit was passed) and discarding the rest, so the child never blocks
/// on a full pipe.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> io::Result<Vec<u8>> {
    let Some(pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut pipe = pipe.take(cap);
    pipe.read_to_end(&mut kept).await?;
    tokio::io::copy(&mut pipe.into_inner(), &mut tokio::io::sink()).await?;
    Ok(kept)
}

/// Decodes and resamples off the async threads (a long file takes milliseconds).
async fn convert(
    bytes: Vec<u8>,
    length: DataLength,
) -> Result<Result<Pcm8k, WavError>, RenderError> {
    tokio::task::spawn_blocking(move || parse_wav(&bytes, length).map(Pcm8k::from))
        .await
        .map_err(|_| RenderError::Interrupted)
}

// ---------------------------------------------------------------------------------------------
// Cache

#[derive(Clone, Debug, Eq, Hash, PartialEq)]
enum CacheKey {
    Speech { voice: String, text: String },
    Ssml { voice: String, ssml: String },
    Audio { scope: String, url: String },
}

impl CacheKey {
    fn heap_bytes(&self) -> usize {
        match self {
            Self::Speech { voice, text } => voice.len() + text.len(),
            Self::Ssml { voice, ssml } => voice.len() + ssml.len(),
            Self::Audio { scope, url } => scope.len() + url.len(),
        }
    }
}

#[derive(Debug)]
struct Slot {
    cell: Arc<OnceCell<Pcm8k>>,
    last_used: u64,
    /// Bytes counted against the limit, once rendered.
    bytes: Option<usize>,
}

/// A least-recently-used map from prompt to audio, bounded in bytes. Slots still rendering
/// are never evicted.
#[derive(Debug)]
struct Cache {
    slots: HashMap<CacheKey, Slot>,
    by_age: BTreeMap<u64, CacheKey>,
    clock: u64,
    bytes: usize,
    limit: usize,
}

impl Cache {
    fn new(limit: usize) -> Self {
        Self {
            slots: HashMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            limit,
        }
    }

    /// The cell for `key`, created empty if absent; marks it most recently used.
    fn slot(&mut self, key: &CacheKey) -> Arc<OnceCell<Pcm8k>> {
        self.clock += 1;
        let now = self.clock;
        if let Some(slot) = self.slots.get_mut(key) {
            self.by_age.remove(&slot.last_used);
            slot.last_used = now;
            self.by_age.insert(now, key.clone());
            return Arc::clone(&slot.cell);
        }
        let cell = Arc::new(OnceCell::new());
        self.slots.insert(
            key.clone(),
            Slot {
                cell: Arc::clone(&cell),
                last_used: now,
                bytes: None,
            },
        );
        self.by_age.insert(now, key.clone());
        cell
    }

    /// Counts a newly rendered `cell` against the limit and evicts the least recently used
    /// entries to make room. An entry larger than the whole cache is not kept.
    fn settle(&mut self, key: &CacheKey, cell: &Arc<OnceCell<Pcm8k>>) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.bytes.is_some() || !Arc::ptr_eq(&slot.cell, cell) {
            return;
        }
        let Some(pcm) = cell.get() else {
            return;
        };
        let bytes = pcm.len() * size_of::<i16>() + key.heap_bytes();
        if bytes > self.limit {
            self.remove(key);
            return;
        }
        slot.bytes = Some(bytes);
        self.bytes += bytes;
        while self.bytes > self.limit {
            let victim = self
                .by_age
                .values()
                .find(|k| *k != key && self.slots.get(*k).is_some_and(|s| s.bytes.is_some()))
                .cloned();
            let Some(victim) = victim else {
                break;
            };
            self.remove(&victim);
        }
    }

    /// Drops the slot for `key` if it still holds `cell` unrendered (its render failed).
    fn forget(&mut self, key: &CacheKey, cell: &Arc<OnceCell<Pcm8k>>) {
        let failed = self
            .slots
            .get(key)
            .is_some_and(|slot| Arc::ptr_eq(&slot.cell, cell) && !slot.cell.initialized());
        if failed {
            self.remove(key);
        }
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.slots.remove(key) {
            self.by_age.remove(&slot.last_used);
            self.bytes -= slot.bytes.unwrap_or(0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WAV decoding

/// How far the `data` chunk runs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum DataLength {
    /// As its header says; a shorter file is truncated.
    Declared,
    /// To the end of the file: streaming writers (`espeak-ng --stdout`) cannot seek back to
    /// fill in the length, so they leave a placeholder.
    ToEndOfFile,
}

/// How samples are stored.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Encoding {
    /// Linear PCM; 8-bit is unsigned (offset 128), wider is signed little-endian.
    Pcm { bytes: usize },
    /// IEEE float, little-endian, 4 or 8 bytes.
    Float { bytes: usize },
    /// G.711 µ-law.
    Ulaw,
    /// G.711 A-law.
    Alaw,
}

impl Encoding {
    fn sample_bytes(self) -> usize {
        match self {
            Self::Pcm { bytes } | Self::Float { bytes } => bytes,
            Self::Ulaw | Self::Alaw => 1,
        }
    }

    /// One sample as a float in [-1, 1]. `raw` is exactly [`Self::sample_bytes`] long.
    fn sample(self, raw: &[u8]) -> f32 {
        let value = match (self, raw) {
            (Self::Pcm { .. }, &[b]) => (f32::from(b) - 128.0) / 128.0,
            (Self::Pcm { .. }, &[a, b]) => f32::from(i16::from_le_bytes([a, b])) / 32_768.0,
            (Self::Pcm { .. }, &[a, b, c]) => {
                // Put the 24 bits at the top of an i32 so the sign extends.
                (i32::from_le_bytes([0, a, b, c]) >> 8) as f32 / 8_388_608.0
            }
            (Self::Pcm { .. }, &[a, b, c, d]) => {
                i32::from_le_bytes([a, b, c, d]) as f32 / 2_147_483_648.0
            }
            (Self::Float { .. }, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
            (Self::Float { .. }, &[a, b, c, d, e, f, g, h]) => {
                f64::from_le_bytes([a, b, c, d, e, f, g, h]) as f32
            }
            (Self::Ulaw, &[b]) => f32::from(audio_codec_algorithms::decode_ulaw(b)) / 32_768.0,
            (Self::Alaw, &[b]) => f32::from(audio_codec_algorithms::decode_alaw(b)) / 32_768.0,
            _ => 0.0,
        };
        // Float files may hold NaN or infinities; treat them as silence.
        if value.is_finite() { value } else { 0.0 }
    }
}

/// The `fmt ` chunk, checked.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct Format {
    encoding: Encoding,
    channels: usize,
    rate: u32,
    /// Bytes per frame (one sample of every channel), at least `channels * sample_bytes`.
    block_align: usize,
}

const WAVE_FORMAT_PCM: u16 = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
const WAVE_FORMAT_ALAW: u16 = 0x0006;
const WAVE_FORMAT_MULAW: u16 = 0x0007;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

/// Decodes a WAV file (RIFF `WAVE`: PCM 8/16/24/32-bit, IEEE float 32/64-bit, µ-law, A-law,
/// plain or `WAVE_FORMAT_EXTENSIBLE`; any rate in [`SUPPORTED_RATES`]) to 8 kHz mono,
/// averaging the channels. The `data` chunk must be as long as it declares.
pub fn decode_wav(bytes: &[u8]) -> Result<Vec<i16>, RenderError> {
    Ok(parse_wav(bytes, DataLength::Declared)?)
}

fn parse_wav(bytes: &[u8], length: DataLength) -> Result<Vec<i16>, WavError> {
    let (format, data) = split_chunks(bytes, length)?;
    // block_align ≥ channels × sample width ≥ 1, checked by parse_format.
    let frames = data.chunks_exact(format.block_align);
    let width = format.encoding.sample_bytes();
    let scale = 1.0 / format.channels as f32;
    let mono: Vec<f32> = frames
        .map(|frame| {
            frame
                .chunks_exact(width)
                .take(format.channels)
                .map(|raw| format.encoding.sample(raw))
                .sum::<f32>()
                * scale
        })
        .collect();
    Ok(resample_to_8k(&mono, format.rate))
}

/// Walks the RIFF chunks (RIFF: Microsoft "Multimedia Programming Interface and Data
/// Specifications 1.0", 1991) and returns the format and the sample bytes.
fn split_chunks(bytes: &[u8], length: DataLength) -> Result<(Format, &[u8]), WavError> {
    let (Some(b"RIFF"), Some(b"WAVE")) = (bytes.get(0..4), bytes.get(8..12)) else {
        return Err(WavError::NotWav);
    };
    let mut rest = bytes.get(12..).unwrap_or_default();
    let mut format = None;
    let mut data = None;
    while let (Some(id), Some(&[a, b, c, d])) = (rest.get(0..4), rest.get(4..8)) {
        let declared = u32::from_le_bytes([a, b, c, d]) as usize;
        let body = rest.get(8..).unwrap_or_default();
        if id == b"data" {
            match body.get(..declared) {
                Some(samples) => data = Some(samples),
                None if length == DataLength::ToEndOfFile => {
                    data = Some(body);
                    break;
                }
                None => {
                    return Err(WavError::Truncated {
                        chunk: "data".to_owned(),
                        declared,
                        available: body.len(),
                    });
                }
            }
        }
        let Some(chunk) = body.get(..declared) else {
            // A chunk cut short after both needed chunks (a trailing LIST, say) is harmless.
            if format.is_some() && data.is_some() {
                break;
            }
            return Err(WavError::Truncated {
                chunk: String::from_utf8_lossy(id).into_owned(),
                declared,
                available: body.len(),
            });
        };
        if id == b"fmt " {
            format = Some(parse_format(chunk)?);
        }
        // Chunks are padded to an even length.
        let padded = declared.saturating_add(declared & 1);
        rest = body.get(padded..).unwrap_or_default();
    }
    let format = format.ok_or(WavError::MissingChunk("fmt "))?;
    let data = data.ok_or(WavError::MissingChunk("data"))?;
    Ok((format, data))
}

/// Parses `WAVEFORMATEX` / `WAVEFORMATEXTENSIBLE`.
fn parse_format(chunk: &[u8]) -> Result<Format, WavError> {
    let u16_at = |at: usize| {
        chunk
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        chunk
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(mut tag), Some(channels), Some(rate), Some(block_align), Some(bits)) =
        (u16_at(0), u16_at(2), u32_at(4), u16_at(12), u16_at(14))
    else {
        return Err(WavError::BadFormat("it is shorter than 16 bytes"));
    };
    if tag == WAVE_FORMAT_EXTENSIBLE {
        // The sub-format GUID starts with the plain format tag.
        tag = u16_at(24).ok_or(WavError::BadFormat(
            "WAVE_FORMAT_EXTENSIBLE without a sub-format",
        ))?;
    }
    let encoding = match (tag, bits) {
        (WAVE_FORMAT_PCM, 8 | 16 | 24 | 32) => Encoding::Pcm {
            bytes: usize::from(bits / 8),
        },
        (WAVE_FORMAT_IEEE_FLOAT, 32 | 64) => Encoding::Float {
            bytes: usize::from(bits / 8),
        },
        (WAVE_FORMAT_MULAW, 8) => Encoding::Ulaw,
        (WAVE_FORMAT_ALAW, 8) => Encoding::Alaw,
        _ => return Err(WavError::UnsupportedEncoding { tag, bits }),
    };
    if channels == 0 {
        return Err(WavError::BadFormat("it declares zero channels"));
    }
    if !SUPPORTED_RATES.contains(&rate) {
        return Err(WavError::UnsupportedRate(rate));
    }
    let channels = usize::from(channels);
    let block_align = usize::from(block_align);
    if block_align < channels * encoding.sample_bytes() {
        return Err(WavError::BadFormat(
            "its block align is smaller than one sample per channel",
        ));
    }
    Ok(Format {
        encoding,
        channels,
        rate,
        block_align,
    })
}

// ---------------------------------------------------------------------------------------------
// Resampling

/// Stopband attenuation of the anti-aliasing filter, in dB.
const STOPBAND_DB: f64 = 70.0;
/// The passband ends at this fraction of the lower Nyquist frequency (3.4 kHz at 8 kHz:
/// the whole telephone band of ITU-T G.711); the stopband starts at the Nyquist frequency.
const PASSBAND_FRACTION: f64 = 0.85;
/// Most coefficients kept for one filter (4 MiB of `f32`).
const MAX_COEFFICIENTS: usize = 1 << 20;

/// Converts mono samples in [-1, 1] at `rate` Hz to 16-bit PCM at 8 kHz, with a
/// Kaiser-windowed sinc low-pass (70 dB stopband from the lower Nyquist frequency) so nothing
/// aliases. Gives `ceil(len × 8000 / rate)` samples; nothing for `rate == 0`.
pub fn resample_to_8k(samples: &[f32], rate: u32) -> Vec<i16> {
    if rate == 0 || samples.is_empty() {
        return Vec::new();
    }
    if rate == OUTPUT_RATE {
        return samples.iter().map(|&s| to_i16(s)).collect();
    }
    PolyphaseFilter::design(rate, OUTPUT_RATE).run(samples)
}

/// Scales a sample in [-1, 1] to 16 bits, rounding and clipping.
fn to_i16(sample: f32) -> i16 {
    (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// A windowed-sinc interpolation filter tabulated at `phases` fractional offsets.
///
/// Output sample `n` sits at input position `n × from / to`. Its integer part picks the input
/// samples, its fractional part the phase (exact when `to / gcd` phases fit in the table,
/// else the nearest tabulated one: an error of under 1/(2·phases) input samples).
struct PolyphaseFilter {
    /// Input samples advanced per output sample, as `step / per` (reduced).
    step: u64,
    per: u64,
    phases: usize,
    /// Taps per phase (even): input samples `base - half + 1 ..= base + half`.
    taps: usize,
    coefficients: Vec<f32>,
}

impl PolyphaseFilter {
    fn design(from: u32, to: u32) -> Self {
        let common = gcd(from, to);
        let step = u64::from(from / common);
        let per = u64::from(to / common);

        let nyquist = f64::from(from.min(to)) / 2.0;
        let pass = nyquist * PASSBAND_FRACTION;
        let cutoff = (pass + nyquist) / 2.0 / f64::from(from); // cycles per input sample
        let width = (nyquist - pass) / f64::from(from);
        // Kaiser's formulas (Oppenheim & Schafer, "Discrete-Time Signal Processing", §7.6).
        let beta = 0.1102 * (STOPBAND_DB - 8.7);
        let length = (STOPBAND_DB - 8.0) / (2.285 * 2.0 * PI * width);
        let half = (length / 2.0).ceil().max(2.0) as usize;
        let taps = 2 * half;
        let phases = usize::try_from(per)
            .unwrap_or(usize::MAX)
            .min((MAX_COEFFICIENTS / taps).max(1));

        let window_norm = bessel_i0(beta);
        let mut coefficients = Vec::with_capacity(phases * taps);
        for phase in 0..phases {
            let offset = phase as f64 / phases as f64;
            let start = coefficients.len();
            for tap in 0..taps {
                // Distance from output instant to input sample, in input samples.
                let distance = offset + half as f64 - 1.0 - tap as f64;
                let x = distance / half as f64;
                let window = bessel_i0(beta * (1.0 - x * x).max(0.0).sqrt()) / window_norm;
                coefficients.push(2.0 * cutoff * sinc(2.0 * cutoff * distance) * window);
            }
            // Unity gain at DC for every phase, so a constant stays constant.
            let phase_coefficients = &mut coefficients[start..];
            let sum: f64 = phase_coefficients.iter().sum();
            phase_coefficients.iter_mut().for_each(|c| *c /= sum);
        }
        Self {
            step,
            per,
            phases,
            taps,
            coefficients: coefficients.into_iter().map(|c| c as f32).collect(),
        }
    }

    fn run(&self, input: &[f32]) -> Vec<i16> {
        let len = input.len() as u64;
        let out_len = (len * self.per).div_ceil(self.step);
        let phases = self.phases as u64;
        let half = self.taps as u64 / 2;
        (0..out_len)
            .map(|n| {
                let position = n * self.step;
                let mut base = position / self.per;
                let mut phase = ((position % self.per) * phases + self.per / 2) / self.per;
                if phase == phases {
                    base += 1;
                    phase = 0;
                }
                // Taps j cover input samples first + j; clip to the input.
                let first = base as i64 + 1 - half as i64;
                let skip = (-first).max(0) as usize;
                let end = (len as i64 - first).clamp(0, self.taps as i64) as usize;
                let row = phase as usize * self.taps;
                let (Some(coefficients), Some(samples)) = (
                    self.coefficients.get(row + skip..row + end),
                    input.get((first + skip as i64) as usize..),
                ) else {
                    return 0;
                };
                let acc: f32 = coefficients.iter().zip(samples).map(|(c, s)| c * s).sum();
                to_i16(acc)
            })
            .collect()
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// The zeroth-order modified Bessel function of the first kind, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let quarter_x2 = x * x / 4.0;
    for k in 1..64 {
        term *= quarter_x2 / (k * k) as f64;
        sum += term;
        if term < sum * 1e-15 {
            break;
        }
    }
    sum
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::Path as UrlPath;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    const MAX_AUDIO: usize = 4 << 20;

    fn vector(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/vectors/audio/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("test vector {path}: {e}"))
    }

    /// Amplitude of the `freq` component of 8 kHz `samples` (a single DFT bin).
    fn amplitude(samples: &[i16], freq: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &s) in samples.iter().enumerate() {
            let angle = 2.0 * PI * freq * n as f64 / f64::from(OUTPUT_RATE);
            re += f64::from(s) * angle.cos();
            im += f64::from(s) * angle.sin();
        }
        2.0 * (re * re + im * im).sqrt() / samples.len() as f64
    }

    fn rms(samples: &[i16]) -> f64 {
        let power: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (power / samples.len() as f64).sqrt()
    }

    /// The middle of a conversion, away from the filter's start-up and tail, 1,200 samples
    /// long so that every multiple of 100 Hz fits a whole number of cycles.
    fn steady(samples: &[i16]) -> &[i16] {
        assert!(samples.len() >= 1_600, "only {} samples", samples.len());
        let start = (samples.len() - 1_200) / 2;
        &samples[start..start + 1_200]
    }

    fn sine(freq: f64, rate: u32, seconds: f64, amplitude: f32) -> Vec<f32> {
        let len = (f64::from(rate) * seconds) as usize;
        (0..len)
            .map(|n| amplitude * (2.0 * PI * freq * n as f64 / f64::from(rate)).sin() as f32)
            .collect()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    // -- resample_to_8k ---------------------------------------------------------------------

    #[test]
    fn passband_tones_keep_their_level() {
        for rate in [
            4_000, 11_025, 16_000, 22_050, 44_100, 44_099, 48_000, 96_000,
        ] {
            for freq in [300.0, 1_000.0, 1_500.0, 3_300.0] {
                if freq > 0.85 * f64::from(rate.min(OUTPUT_RATE)) / 2.0 {
                    continue;
                }
                let out = resample_to_8k(&sine(freq, rate, 0.5, 0.5), rate);
                let level = amplitude(steady(&out), freq) / 16_384.0;
                assert!(
                    db(level).abs() < 0.1,
                    "{freq} Hz at {rate} Hz: {:.3} dB",
                    db(level)
                );
            }
        }
    }

    #[test]
    fn tones_above_4khz_do_not_alias() {
        for rate in [11_025, 16_000, 22_050, 44_100, 44_099, 48_000] {
            for freq in [4_100.0, 4_500.0, 6_000.0, 7_900.0, 10_000.0] {
                if freq >= f64::from(rate) / 2.0 {
                    continue;
                }
                let out = resample_to_8k(&sine(freq, rate, 0.5, 0.5), rate);
                let attenuation =
                    db(16_384.0 / std::f64::consts::SQRT_2 / rms(steady(&out)).max(1e-9));
                assert!(
                    attenuation >= 55.0,
                    "{freq} Hz at {rate} Hz: {attenuation:.1} dB"
                );
            }
        }
    }

    #[test]
    fn upsampling_suppresses_images() {
        // 1.5 kHz at 4 kHz has its first image at 2.5 kHz.
        let out = resample_to_8k(&sine(1_500.0, 4_000, 0.5, 0.5), 4_000);
        let window = steady(&out);
        assert!(db(amplitude(window, 1_500.0) / 16_384.0).abs() < 0.1);
        assert!(db(16_384.0 / amplitude(window, 2_500.0)) > 55.0);
    }

    #[test]
    fn output_length_is_the_duration_at_8khz() {
        for (len, rate) in [
            (1, 44_100),
            (8_820, 44_100),
            (8_821, 44_100),
            (3, 16_000),
            (10, 4_000),
            (22_050, 22_050),
            (7, 8_000),
        ] {
            let out = resample_to_8k(&vec![0.0; len], rate);
            let expected = (len as u64 * 8_000).div_ceil(u64::from(rate)) as usize;
            assert_eq!(out.len(), expected, "{len} samples at {rate} Hz");
        }
        assert!(resample_to_8k(&[0.5; 100], 0).is_empty());
        assert!(resample_to_8k(&[], 44_100).is_empty());
    }

    #[test]
    fn dc_passes_at_unity_gain_and_8khz_passes_through() {
        let out = resample_to_8k(&[0.25; 44_100], 44_100);
        assert!(
            steady(&out)
                .iter()
                .all(|&s| (i32::from(s) - 8_192).abs() <= 1)
        );
        let same = resample_to_8k(&[0.0, 0.5, -0.5, 1.0, -1.0, 2.0], 8_000);
        assert_eq!(same, [0, 16_384, -16_384, 32_767, -32_768, 32_767]);
    }

    // -- decode_wav -------------------------------------------------------------------------

    #[test]
    fn decodes_each_encoding_to_a_1khz_tone_at_8khz() {
        for name in [
            "tone1k_16k_s16.wav",
            "tone1k_44k1_s16.wav",
            "tone1k_8k_ulaw.wav",
            "tone1k_8k_alaw.wav",
            "tone1k_22k05_u8.wav",
            "tone1k_48k_s24.wav",
            "tone1k_32k_s32.wav",
            "tone1k_44k1_f32.wav",
        ] {
            let pcm = decode_wav(&vector(name)).unwrap();
            // 0.2 s at 8 kHz.
            assert_eq!(pcm.len(), 1_600, "{name}");
            let window = steady(&pcm);
            let tone = amplitude(window, 1_000.0);
            // sox's "vol 0.5" of full scale; 8-bit and G.711 add quantisation noise only.
            assert!(
                (tone / 16_384.0 - 1.0).abs() < 0.03,
                "{name}: amplitude {tone}"
            );
            // Nearly all the energy is the tone.
            let rest = (rms(window).powi(2) - tone.powi(2) / 2.0).max(0.0).sqrt();
            assert!(db(tone / rest) > 30.0, "{name}: tone {tone}, rest {rest}");
        }
    }

    #[test]
    fn stereo_channels_are_mixed() {
        // Left 1 kHz, right 2 kHz: the mix holds both at half level.
        let pcm = decode_wav(&vector("tone1k2k_44k1_stereo.wav")).unwrap();
        assert_eq!(pcm.len(), 1_600);
        let window = steady(&pcm);
        for freq in [1_000.0, 2_000.0] {
            let level = amplitude(window, freq);
            assert!((level / 8_192.0 - 1.0).abs() < 0.03, "{freq} Hz: {level}");
        }
    }

    #[test]
    fn a_6khz_tone_is_attenuated_not_aliased() {
        for (tone, reference) in [
            ("tone6k_44k1_s16.wav", "tone1k_44k1_s16.wav"),
            ("tone6k_16k_s16.wav", "tone1k_16k_s16.wav"),
        ] {
            let tone = decode_wav(&vector(tone)).unwrap();
            let reference = decode_wav(&vector(reference)).unwrap();
            let attenuation = db(rms(steady(&reference)) / rms(steady(&tone)).max(1e-9));
            assert!(attenuation >= 30.0, "{tone:?}: {attenuation:.1} dB");
        }
    }

    /// A WAV file built by hand: `fmt ` fields, then the chunks given.
    fn wav(
        tag: u16,
        channels: u16,
        rate: u32,
        block_align: u16,
        bits: u16,
        chunks: &[(&[u8; 4], &[u8])],
    ) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        fmt.extend_from_slice(&block_align.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mut body = b"WAVE".to_vec();
        for (id, data) in [(b"fmt ", fmt.as_slice())]
            .into_iter()
            .chain(chunks.iter().copied())
        {
            body.extend_from_slice(id);
            body.extend_from_slice(&(data.len() as u32).to_le_bytes());
            body.extend_from_slice(data);
            if data.len() % 2 == 1 {
                body.push(0);
            }
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn odd_chunks_are_padded_and_unknown_chunks_skipped() {
        let samples: Vec<u8> = [1_000i16, -2_000, 3_000]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let file = wav(
            1,
            1,
            8_000,
            2,
            16,
            &[(b"LIST", b"odd"), (b"data", &samples)],
        );
        assert_eq!(decode_wav(&file).unwrap(), [1_000, -2_000, 3_000]);
    }

    #[test]
    fn float64_and_padded_frames_decode_and_nan_is_silence() {
        let samples: Vec<u8> = [0.5f64, f64::NAN, -0.25]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let file = wav(3, 1, 8_000, 8, 64, &[(b"data", &samples)]);
        assert_eq!(decode_wav(&file).unwrap(), [16_384, 0, -8_192]);
        // 16-bit samples in 4-byte frames: the padding is skipped.
        let padded = [0x00, 0x40, 0xAA, 0xAA, 0x00, 0xC0, 0xAA, 0xAA];
        let file = wav(1, 1, 8_000, 4, 16, &[(b"data", &padded)]);
        assert_eq!(decode_wav(&file).unwrap(), [16_384, -16_384]);
    }

    #[test]
    fn unsupported_formats_are_named() {
        let data: &[(&[u8; 4], &[u8])] = &[(b"data", &[0; 8])];
        let adpcm = wav(2, 1, 8_000, 256, 4, data);
        assert_eq!(
            decode_wav(&adpcm),
            Err(WavError::UnsupportedEncoding { tag: 2, bits: 4 }.into())
        );
        let pcm12 = wav(1, 1, 8_000, 2, 12, data);
        assert_eq!(
            decode_wav(&pcm12),
            Err(WavError::UnsupportedEncoding { tag: 1, bits: 12 }.into())
        );
        let slow = wav(1, 1, 1_000, 2, 16, data);
        assert_eq!(
            decode_wav(&slow),
            Err(WavError::UnsupportedRate(1_000).into())
        );
        let silent = wav(1, 0, 8_000, 2, 16, data);
        assert!(matches!(
            decode_wav(&silent),
            Err(RenderError::Wav(WavError::BadFormat(_)))
        ));
        let narrow = wav(1, 2, 8_000, 2, 16, data);
        assert!(matches!(
            decode_wav(&narrow),
            Err(RenderError::Wav(WavError::BadFormat(_)))
        ));
        let no_data = wav(1, 1, 8_000, 2, 16, &[]);
        assert_eq!(
            decode_wav(&no_data),
            Err(WavError::MissingChunk("data").into())
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let file = vector("tone1k_16k_s16.wav");
        for len in 0..file.len() {
            let result = decode_wav(&file[..len]);
            assert!(result.is_err(), "a {len}-byte prefix decoded");
        }
        let Err(RenderError::Wav(WavError::Truncated {
            chunk,
            declared,
            available,
        })) = decode_wav(&file[..file.len() - 10])
        else {
            panic!("expected a truncated data chunk");
        };
        assert_eq!((chunk.as_str(), declared - available), ("data", 10));
    }

    #[test]
    fn garbage_is_an_error_and_mutations_never_panic() {
        assert_eq!(
            decode_wav(b"ID3\x04 this is an mp3"),
            Err(WavError::NotWav.into())
        );
        assert_eq!(
            decode_wav(b"<html>404</html>"),
            Err(WavError::NotWav.into())
        );
        // A small xorshift, so the run is the same every time.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let original = vector("tone1k_8k_ulaw.wav");
        for _ in 0..2_000 {
            let mut file = original.clone();
            for _ in 0..1 + next() % 4 {
                // Mostly in the headers, where the lengths and format live.
                let at = (next() % 64) as usize % file.len();
                file[at] = next() as u8;
            }
            let _ = decode_wav(&file);
        }
    }

    #[test]
    fn streamed_length_placeholder_reads_to_end_of_file() {
        // `espeak-ng --stdout` writes 0x7ffff000 as the data length.
        let mut file = vector("tone1k_16k_s16.wav");
        let at = file.windows(4).position(|w| w == b"data").unwrap() + 4;
        file[at..at + 4].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        assert!(matches!(
            decode_wav(&file),
            Err(RenderError::Wav(WavError::Truncated { .. }))
        ));
        assert_eq!(
            parse_wav(&file, DataLength::ToEndOfFile).unwrap().len(),
            1_600
        );
    }

    // -- silence and cache ------------------------------------------------------------------

    #[test]
    fn silence_has_the_asked_length_up_to_the_cap() {
        let short = PromptRenderer::silence(Duration::from_millis(250));
        assert_eq!(short.len(), 2_000);
        assert!(short.iter().all(|&s| s == 0));
        assert_eq!(
            PromptRenderer::silence(Duration::from_secs(3_600)).len(),
            480_000
        );
        assert!(PromptRenderer::silence(Duration::ZERO).is_empty());
    }

    fn audio_key(url: &str) -> CacheKey {
        CacheKey::Audio {
            scope: String::new(),
            url: url.to_owned(),
        }
    }

    fn fill(cache: &mut Cache, key: &CacheKey, samples: usize) -> Arc<OnceCell<Pcm8k>> {
        let cell = cache.slot(key);
        cell.set(Pcm8k::from(vec![0; samples])).unwrap();
        cache.settle(key, &cell);
        cell
    }

    #[test]
    fn cache_evicts_least_recently_used_and_never_in_flight() {
        let mut cache = Cache::new(1_000);
        let (a, b, c, d) = (
            audio_key("a"),
            audio_key("b"),
            audio_key("c"),
            audio_key("d"),
        );
        fill(&mut cache, &a, 200);
        fill(&mut cache, &b, 200);
        let pending = cache.slot(&d); // still rendering
        cache.slot(&a); // a is now more recent than b
        fill(&mut cache, &c, 200); // 3 × 401 bytes > 1,000: b goes
        assert!(cache.slots.contains_key(&a));
        assert!(!cache.slots.contains_key(&b));
        assert!(cache.slots.contains_key(&c));
        assert!(cache.slots.contains_key(&d));
        assert_eq!(cache.bytes, 802);
        // A failed render is forgotten; an entry bigger than the cache is not kept.
        cache.forget(&d, &pending);
        assert!(!cache.slots.contains_key(&d));
        fill(&mut cache, &d, 600);
        assert!(!cache.slots.contains_key(&d));
        assert_eq!(cache.bytes, 802);
        assert_eq!(cache.slots.len(), cache.by_age.len());
    }

    // -- text-to-speech (needs espeak-ng) ---------------------------------------------------

    fn fetcher() -> Fetcher {
        Fetcher::new("outdial-test", Duration::from_secs(5)).unwrap()
    }

    fn espeak() -> PromptRenderer {
        PromptRenderer::new("espeak-ng", "en", fetcher(), MAX_AUDIO)
    }

    /// Writes an executable shell script standing in for the TTS command.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn espeak_speech_is_audible_and_about_the_right_length() {
        let renderer = espeak();
        let pcm = renderer
            .speak("Hello, this is a test call from Outdial.")
            .await
            .unwrap();
        let seconds = pcm.len() as f64 / f64::from(OUTPUT_RATE);
        assert!((0.5..5.0).contains(&seconds), "{seconds} s");
        assert!(rms(&pcm) > 500.0, "RMS {}", rms(&pcm));
        let again = renderer
            .speak("Hello, this is a test call from Outdial.")
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&pcm, &again));
        let other = renderer.speak("Goodbye.").await.unwrap();
        assert!(!Arc::ptr_eq(&pcm, &other));
        assert!(renderer.speak("  ").await.unwrap().is_empty());
        renderer.check_tts().await.unwrap();
    }

    #[tokio::test]
    async fn ssml_is_interpreted_not_read_aloud_and_text_never_is() {
        let renderer = espeak();
        let plain = renderer.speak("Hello").await.unwrap();
        let ssml = renderer.speak_ssml("<speak>Hello</speak>").await.unwrap();
        let paused = renderer
            .speak_ssml(r#"<speak>Hello <break time="1000ms"/> Hello</speak>"#)
            .await
            .unwrap();
        let literal = renderer.speak("<speak>Hello</speak>").await.unwrap();
        // Read as text, the tags would add several seconds of "less than speak...".
        assert!(
            ssml.len().abs_diff(plain.len()) < 2_000,
            "{} vs {}",
            ssml.len(),
            plain.len()
        );
        assert!(
            paused.len() > plain.len() + 8_000,
            "{} vs {}",
            paused.len(),
            plain.len()
        );
        assert!(
            literal.len() > plain.len() + 4_000,
            "plain text that looks like SSML must be read as text: {} vs {}",
            literal.len(),
            plain.len()
        );
    }

    const SENTENCE: &str = "Your appointment is on Tuesday morning at the dental clinic.";

    #[tokio::test]
    async fn slow_prosody_is_measurably_longer() {
        let renderer = espeak();
        let normal = renderer
            .speak_ssml(&format!("<speak>{SENTENCE}</speak>"))
            .await
            .unwrap();
        let slow = renderer
            .speak_ssml(&format!(
                r#"<speak><prosody rate="slow">{SENTENCE}</prosody></speak>"#
            ))
            .await
            .unwrap();
        assert!(
            slow.len() as f64 > normal.len() as f64 * 1.1,
            "slow {} vs normal {} samples",
            slow.len(),
            normal.len()
        );
    }

    #[tokio::test]
    async fn emphasis_say_as_and_sub_are_spoken() {
        let renderer = espeak();
        let emphasis = renderer
            .speak_ssml(r#"<speak>This is <emphasis level="strong">important</emphasis>.</speak>"#)
            .await
            .unwrap();
        assert!(rms(&emphasis) > 500.0, "RMS {}", rms(&emphasis));
        let number = renderer
            .speak_ssml("<speak>Code 12345.</speak>")
            .await
            .unwrap();
        let digits = renderer
            .speak_ssml(r#"<speak>Code <say-as interpret-as="digits">12345</say-as>.</speak>"#)
            .await
            .unwrap();
        let telephone = renderer
            .speak_ssml(
                r#"<speak>Call <say-as interpret-as="telephone">555-0199</say-as>.</speak>"#,
            )
            .await
            .unwrap();
        let date = renderer
            .speak_ssml(r#"<speak><say-as interpret-as="date">12/25/2024</say-as></speak>"#)
            .await
            .unwrap();
        for pcm in [&digits, &telephone, &date] {
            assert!(rms(pcm) > 500.0, "RMS {}", rms(pcm));
        }
        // "one two three four five" is not "twelve thousand three hundred and forty five".
        assert!(
            digits.len().abs_diff(number.len()) > 1_600,
            "digits {} vs number {}",
            digits.len(),
            number.len()
        );
        let abbreviation = renderer.speak_ssml("<speak>W3C</speak>").await.unwrap();
        let alias = renderer
            .speak_ssml(r#"<speak><sub alias="World Wide Web Consortium">W3C</sub></speak>"#)
            .await
            .unwrap();
        assert!(
            alias.len() > abbreviation.len() + 2_000,
            "alias {} vs abbreviation {}",
            alias.len(),
            abbreviation.len()
        );
    }

    #[tokio::test]
    async fn markup_characters_from_values_are_spoken_not_parsed() {
        let renderer = espeak();
        // What the interpreter writes for `<emphasis><value expr="'Tom <&> Jerry </speak>'"/>`.
        let escaped = renderer
            .speak_ssml(
                r#"<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis"><emphasis>Tom &lt;&amp;&gt; Jerry &lt;/speak&gt;</emphasis></speak>"#,
            )
            .await
            .unwrap();
        let names = renderer
            .speak_ssml("<speak><emphasis>Tom Jerry</emphasis></speak>")
            .await
            .unwrap();
        // "less than ampersand greater than ... less than slash speak greater than".
        assert!(
            escaped.len() > names.len() + 8_000,
            "{} vs {}",
            escaped.len(),
            names.len()
        );
        assert!(rms(&escaped) > 500.0);
    }

    #[test]
    fn ssml_is_rewritten_into_what_espeak_renders() {
        let rewritten = |ssml: &str| espeak_ssml(ssml).unwrap().unwrap();
        assert_eq!(
            rewritten(
                r#"<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="fr-FR"><p><s>Un <emphasis level="strong">deux</emphasis></s></p></speak>"#
            ),
            r#"<speak xml:lang="fr-FR"><p><s>Un <emphasis level="strong">deux</emphasis></s></p></speak>"#
        );
        assert_eq!(
            rewritten(
                r#"<speak><sub alias="A &amp; B">AB</sub> <say-as interpret-as="digits">4 2 7</say-as></speak>"#
            ),
            r#"<speak>A &amp; B <say-as interpret-as="characters">427</say-as></speak>"#
        );
        assert_eq!(
            rewritten(
                r#"<speak><say-as interpret-as="telephone">+1 (555) 010-9999</say-as>; <say-as interpret-as="currency">$5</say-as></speak>"#
            ),
            "<speak>plus 1, 5 5 5, 0 1 0, 9 9 9 9; $5</speak>"
        );
        assert_eq!(
            rewritten(
                r#"<speak><voice name="x&amp;&quot;y" gender="female" foo="bar">Hi <mark name="m"/><phoneme ph="x">there</phoneme></voice><break time="300ms"/></speak>"#
            ),
            r#"<speak><voice gender="female" name="xy">Hi there</voice><break time="300ms"></break></speak>"#
        );
        assert_eq!(espeak_ssml("<speak> <mark name=\"m\"/> </speak>"), Ok(None));
        for bad in ["<speak>unclosed", "<p>Hi</p>", "plain text"] {
            assert!(
                matches!(espeak_ssml(bad), Err(RenderError::BadSsml { .. })),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn concurrent_requests_render_once() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let tts = script(
            dir.path(),
            "tts",
            &format!("echo run >> '{}'\nexec espeak-ng \"$@\"", count.display()),
        );
        let renderer = PromptRenderer::new(tts.to_str().unwrap(), "en", fetcher(), MAX_AUDIO);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let renderer = renderer.clone();
                tokio::spawn(async move { renderer.speak("Please hold.").await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap().unwrap());
        }
        assert!(results.iter().all(|pcm| Arc::ptr_eq(pcm, &results[0])));
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
    }

    #[tokio::test]
    async fn missing_tts_command_says_to_install_espeak() {
        let renderer = PromptRenderer::new("/nonexistent/espeak-ng", "en", fetcher(), MAX_AUDIO);
        let err = renderer.check_tts().await.unwrap_err();
        assert!(matches!(err, RenderError::TtsMissing { .. }), "{err:?}");
        assert!(
            err.to_string().contains("apt-get install espeak-ng"),
            "{err}"
        );
        assert_eq!(renderer.speak("hello").await.unwrap_err(), err);
    }

    #[tokio::test]
    async fn unknown_voice_is_a_failure_with_espeaks_reason() {
        let renderer = PromptRenderer::new("espeak-ng", "nosuchvoice", fetcher(), MAX_AUDIO);
        let Err(err) = renderer.speak("hello").await else {
            panic!("espeak-ng spoke in a voice that does not exist");
        };
        let RenderError::TtsFailed { stderr, .. } = &err else {
            panic!("expected a TTS failure, got {err:?}");
        };
        assert!(stderr.contains("voice"), "{stderr}");
        assert!(err.to_string().contains("nosuchvoice"));
        // The failure is not cached: the next call runs the command again.
        assert_eq!(renderer.cache().slots.len(), 0);
    }

    #[tokio::test]
    async fn empty_or_oversized_output_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let silent = script(dir.path(), "silent", "cat > /dev/null");
        let renderer = PromptRenderer::new(silent.to_str().unwrap(), "en", fetcher(), MAX_AUDIO);
        let err = renderer.speak("hello").await.unwrap_err();
        assert!(matches!(err, RenderError::TtsEmpty { .. }), "{err:?}");

        let header_only = script(
            dir.path(),
            "header",
            "cat > /dev/null\nsox -n -t wav -r 22050 -b 16 -c 1 - trim 0 0",
        );
        let renderer =
            PromptRenderer::new(header_only.to_str().unwrap(), "en", fetcher(), MAX_AUDIO);
        let err = renderer.speak("hello").await.unwrap_err();
        assert!(matches!(err, RenderError::TtsEmpty { .. }), "{err:?}");

        let renderer = PromptRenderer::new("espeak-ng", "en", fetcher(), 10_000);
        let err = renderer
            .speak("This sentence is longer than ten thousand bytes of audio.")
            .await
            .unwrap_err();
        assert_eq!(err, RenderError::TtsTooLarge { limit: 10_000 });
    }

    #[tokio::test]
    async fn slow_tts_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let slow = script(
            dir.path(),
            "slow",
            &format!("echo $$ > '{}'\nexec sleep 30", pid_file.display()),
        );
        let renderer = PromptRenderer::new(slow.to_str().unwrap(), "en", fetcher(), MAX_AUDIO)
            .with_limits(Duration::from_millis(300), DEFAULT_CACHE_BYTES);
        let started = std::time::Instant::now();
        let err = renderer.speak("hello").await.unwrap_err();
        assert!(matches!(err, RenderError::TtsTimeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        // Killed: gone, or a zombie until the runtime reaps it.
        for _ in 0..50 {
            match std::fs::read_to_string(&stat) {
                Err(_) => return,
                Ok(s) if s.contains(") Z ") => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        panic!("the TTS process is still running");
    }

    // -- audio files over HTTP --------------------------------------------------------------

    async fn serve_vectors(hits: Arc<AtomicUsize>) -> SocketAddr {
        let app = Router::new().route(
            "/audio/{name}",
            get(move |UrlPath(name): UrlPath<String>| {
                let hits = Arc::clone(&hits);
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    match name.as_str() {
                        "garbage.wav" => (StatusCode::OK, b"not audio at all".to_vec()),
                        _ => match std::fs::read(format!(
                            "{}/tests/vectors/audio/{name}",
                            env!("CARGO_MANIFEST_DIR")
                        )) {
                            Ok(bytes) => (StatusCode::OK, bytes),
                            Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
                        },
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn audio_is_fetched_decoded_and_cached() {
        let hits = Arc::new(AtomicUsize::new(0));
        let addr = serve_vectors(Arc::clone(&hits)).await;
        let renderer = espeak();
        let url = format!("http://{addr}/audio/tone1k_44k1_s16.wav");
        let first = renderer.audio(&url).await.unwrap();
        assert_eq!(first.len(), 1_600);
        assert!((amplitude(steady(&first), 1_000.0) / 16_384.0 - 1.0).abs() < 0.03);
        let second = renderer.audio(&url).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn audio_errors_name_the_url() {
        let addr = serve_vectors(Arc::new(AtomicUsize::new(0))).await;
        let renderer = espeak();
        let missing = format!("http://{addr}/audio/missing.wav");
        let err = renderer.audio(&missing).await.unwrap_err();
        assert_eq!(
            err,
            RenderError::Fetch(FetchError::Status {
                url: missing,
                status: 404
            })
        );
        let garbage = format!("http://{addr}/audio/garbage.wav");
        let err = renderer.audio(&garbage).await.unwrap_err();
        assert_eq!(
            err,
            RenderError::BadAudio {
                url: garbage.clone(),
                source: WavError::NotWav
            }
        );
        assert!(err.to_string().contains(&garbage));
        let small = PromptRenderer::new("espeak-ng", "en", fetcher(), 1_000);
        let big = format!("http://{addr}/audio/tone1k_44k1_s16.wav");
        let err = small.audio(&big).await.unwrap_err();
        assert!(
            matches!(
                err,
                RenderError::Fetch(FetchError::TooLarge { limit: 1_000, .. })
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn audio_cache_is_bounded() {
        let hits = Arc::new(AtomicUsize::new(0));
        let addr = serve_vectors(Arc::clone(&hits)).await;
        // Each file is 1,600 samples (3,200 bytes): two do not fit in 5,000 bytes.
        let renderer = espeak().with_limits(DEFAULT_TTS_TIMEOUT, 5_000);
        let a = format!("http://{addr}/audio/tone1k_16k_s16.wav");
        let b = format!("http://{addr}/audio/tone1k_8k_ulaw.wav");
        renderer.audio(&a).await.unwrap();
        renderer.audio(&b).await.unwrap();
        renderer.audio(&b).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        renderer.audio(&a).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }
}
