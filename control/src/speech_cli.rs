//! `outdial speech recognize`: one utterance through the recognizer exactly as a live call
//! hears it (8 kHz, through G.711, the telephone-band front end, the field's grammar), to try
//! a grammar or a phrase without placing a call. The IR harness's audio lane uses it.
//!
//! Prints one line: the confidence, a tab, the words recognised (nothing after the tab when
//! no words were), or `--json`.

use std::path::PathBuf;
use std::process::Command;

use clap::Args;
use outdial_dataplane::api::Codec;
use outdial_dataplane::rtp::g711;

use crate::config::Config;
use crate::speech::{self, Calibration, Decoder, Jsgf, Model};

/// `outdial speech recognize`.
#[derive(Debug, Args)]
pub struct RecognizeArgs {
    /// The grammar: JSGF text (as Outdial translates SRGS for the recognizer).
    #[arg(long, value_name = "FILE", required_unless_present = "grammar")]
    pub jsgf: Option<PathBuf>,
    /// The grammar: an SRGS grammar (XML or ABNF), or `builtin:boolean`, `builtin:digits` ...
    #[arg(long, value_name = "FILE|BUILTIN", conflicts_with = "jsgf")]
    pub grammar: Option<String>,
    /// Words for espeak-ng to say (the caller).
    #[arg(long, value_name = "WORDS", required_unless_present_any = ["raw", "wav"])]
    pub say: Option<String>,
    /// Or the caller's audio: raw PCM16 little-endian, 8 kHz, mono.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["say", "wav"])]
    pub raw: Option<PathBuf>,
    /// Or the caller's audio: a WAV file of PCM16, 8 kHz, mono (as bench/speech/make_set.sh
    /// writes).
    #[arg(long, value_name = "FILE", conflicts_with = "say")]
    pub wav: Option<PathBuf>,
    /// The espeak-ng voice for --say.
    #[arg(long, default_value = "en-us")]
    pub voice: String,
    /// The G.711 law the audio goes through: pcmu, pcma or none.
    #[arg(long, default_value = "pcmu")]
    pub law: String,
    /// TOML configuration whose [speech] section is used (built-in defaults if omitted).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print JSON: {"text": ..., "confidence": ...}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command; the process exit code.
pub fn recognize(args: &RecognizeArgs) -> Result<(), String> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let grammar = grammar(args)?;
    let pcm = audio(args)?;
    let pcm = through_g711(&pcm, &args.law)?;
    let model = Model::load(
        config.speech.model_paths().map_err(|e| e.to_string())?,
        speech::engine::DEFAULT_FILL_RMS,
        Calibration::default(),
    )
    .map_err(|e| e.to_string())?;
    let mut decoder = Decoder::new(model).map_err(|e| e.to_string())?;
    let heard = decoder
        .recognize(&grammar, &pcm)
        .map_err(|e| e.to_string())?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "text": heard.text, "confidence": heard.confidence })
        );
    } else {
        println!("{:.3}\t{}", heard.confidence, heard.text);
    }
    Ok(())
}

fn grammar(args: &RecognizeArgs) -> Result<Jsgf, String> {
    let text = match (&args.jsgf, &args.grammar) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, Some(spec)) => {
            let grammar = if let Some(builtin) = spec.strip_prefix("builtin:") {
                outdial_vxml::srgs::Grammar::builtin(builtin, outdial_vxml::srgs::Mode::Voice)
            } else {
                let text = std::fs::read_to_string(spec)
                    .map_err(|e| format!("cannot read {spec}: {e}"))?;
                outdial_vxml::srgs::Grammar::parse(&text, None, None)
            }
            .map_err(|e| format!("{spec}: {e}"))?;
            grammar.to_jsgf().map_err(|e| format!("{spec}: {e}"))?.text
        }
        (None, None) => return Err("give --jsgf FILE or --grammar FILE|BUILTIN".to_owned()),
    };
    Jsgf::new(text).map_err(|e| e.to_string())
}

/// The caller's audio as PCM16 at 8 kHz.
fn audio(args: &RecognizeArgs) -> Result<Vec<i16>, String> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let bytes = match (&args.raw, &args.wav, &args.say) {
        (Some(path), _, _) => read(path)?,
        (None, Some(path), _) => wav_samples(&read(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_vec(),
        (None, None, Some(words)) => say(words, &args.voice)?,
        (None, None, None) => return Err("give --say WORDS, --wav FILE or --raw FILE".to_owned()),
    };
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// The sample bytes of a RIFF WAV of PCM16, 8 kHz, mono.
fn wav_samples(wav: &[u8]) -> Result<&[u8], String> {
    if wav.get(..4) != Some(b"RIFF") || wav.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF WAVE file".to_owned());
    }
    let mut rest = wav.get(12..).unwrap_or_default();
    let mut format_ok = false;
    while let (Some(id), Some(size)) = (rest.get(..4), rest.get(4..8)) {
        let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let body = rest.get(8..).unwrap_or_default();
        let chunk = body.get(..size.min(body.len())).unwrap_or_default();
        match id {
            b"fmt " => {
                let field = |at: usize| {
                    chunk
                        .get(at..at + 2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                };
                let rate = chunk
                    .get(4..8)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                format_ok = field(0) == Some(1)
                    && field(2) == Some(1)
                    && rate == Some(8000)
                    && field(14) == Some(16);
            }
            b"data" if format_ok => return Ok(chunk),
            b"data" => return Err("not PCM16 mono at 8 kHz (convert it with sox first)".to_owned()),
            _ => {}
        }
        rest = body.get(size + size % 2..).unwrap_or_default();
    }
    Err("no data chunk".to_owned())
}

/// espeak-ng's speech of `words`, resampled by sox to raw PCM16 8 kHz.
fn say(words: &str, voice: &str) -> Result<Vec<u8>, String> {
    let dir = std::env::temp_dir().join(format!("outdial-say-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let wav = dir.join("say.wav");
    let raw = dir.join("say.raw");
    let run = |program: &str, command: &mut Command| -> Result<(), String> {
        let status = command
            .status()
            .map_err(|e| format!("cannot run {program} ({e}): apt-get install espeak-ng sox"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program} failed: {status}"))
        }
    };
    run(
        "espeak-ng",
        Command::new("espeak-ng")
            .args(["-v", voice, "-w"])
            .arg(&wav)
            .arg(words),
    )?;
    run(
        "sox",
        Command::new("sox")
            .arg(&wav)
            .args([
                "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", "-t", "raw",
            ])
            .arg(&raw),
    )?;
    let bytes = std::fs::read(&raw).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// `pcm` encoded in `law` and decoded again, as a call carries it.
fn through_g711(pcm: &[i16], law: &str) -> Result<Vec<i16>, String> {
    let codec = match law {
        "pcmu" => Codec::Pcmu,
        "pcma" => Codec::Pcma,
        "none" => return Ok(pcm.to_vec()),
        other => return Err(format!("--law {other:?}: use pcmu, pcma or none")),
    };
    let mut octets = vec![0u8; pcm.len()];
    let n = g711::encode(codec, pcm, &mut octets);
    let mut out = vec![0i16; n];
    let n = g711::decode(codec, &octets[..n], &mut out);
    out.truncate(n);
    Ok(out)
}
