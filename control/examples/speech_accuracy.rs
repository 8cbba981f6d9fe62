//! The speech accuracy evaluator and the tools around it (docs/benchmarks.md, "Speech
//! recognition"):
//!
//! ```text
//! cargo run --release -p outdial-control --example speech_accuracy -- eval SET_DIR [options]
//! cargo run --release -p outdial-control --example speech_accuracy -- upsample OUT_DIR IN.wav...
//! cargo run --release -p outdial-control --example speech_accuracy -- cost SET_DIR --decoders N
//! ```
//!
//! `eval` runs every file of a set made by `bench/speech/make_set.sh` (or
//! `make_fsdd_set.sh`, real speakers) through the engine
//! (one decoder, one thread) with the grammars of `bench/speech/grammars/` and prints, per
//! grammar, the accuracy, the false accepts of out-of-grammar speech and the noinput rate on
//! silence at the confidence level, and the decode latency (the engine gets the whole
//! utterance at the end of speech, so that is the time from end of speech to hypothesis),
//! as a markdown table; `--json` writes the same figures and every decision.
//! `upsample` passes 8 kHz WAVs through the engine's front-end (`bench/speech/adapt.sh`
//! adapts on what the engine will see). `cost` measures RSS per decoder and CPU per second
//! of audio with N decoders decoding at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use outdial_control::speech::engine::Decoded;
use outdial_control::speech::{Calibration, Decoder, Jsgf, Model, ModelPaths};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct EngineArgs {
    /// The MLLR transform: a path, `builtin` (bench/speech/telephone.mllr) or `none`.
    #[arg(long, default_value = "builtin")]
    mllr: String,
    /// RMS of the front-end's high-band fill (PCM16 units; 0 = none).
    #[arg(long, default_value_t = outdial_control::speech::engine::DEFAULT_FILL_RMS)]
    fill: f32,
    /// Confidence calibration: `intercept,acoustic,coverage,worst_word,per_phone` (the
    /// engine's `Calibration`; `bench/speech/fit_confidence.py` fits them); default the
    /// engine's.
    #[arg(long, value_delimiter = ',', num_args = 5, allow_hyphen_values = true)]
    calibration: Option<Vec<f32>>,
    /// A further PocketSphinx argument pair, e.g. `--ps=-wip --ps=0.01` (repeatable).
    #[arg(long = "ps", allow_hyphen_values = true)]
    ps: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a set through the engine and reports accuracy per grammar.
    Eval {
        set: PathBuf,
        /// The JSGF grammars, one `<name>.jsgf` per grammar of the manifest.
        #[arg(long, default_value = "bench/speech/grammars")]
        grammars: PathBuf,
        /// The VoiceXML confidencelevel.
        #[arg(long, default_value_t = 0.5)]
        level: f32,
        /// Writes the figures and every decision here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also decodes each utterance with speech in these perturbed copies and records
        /// their meanings (`alts`) and confidences in the JSON, for `fit_confidence.py`'s
        /// agreement features: `shift:N` drops the first N samples, `speed:R` resamples to
        /// R times the speed (tried and dropped: docs/benchmarks.md).
        #[arg(long, value_delimiter = ',')]
        perturb: Vec<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Writes each 8 kHz WAV through the engine's front-end as a 16 kHz WAV in OUT_DIR.
    Upsample {
        out_dir: PathBuf,
        inputs: Vec<PathBuf>,
        #[arg(long, default_value_t = outdial_control::speech::engine::DEFAULT_FILL_RMS)]
        fill: f32,
    },
    /// RSS per decoder and CPU per second of audio with N decoders at once.
    Cost {
        set: PathBuf,
        #[arg(long, default_value_t = 2)]
        decoders: usize,
        #[arg(long, default_value = "bench/speech/grammars")]
        grammars: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Eval {
            set,
            grammars,
            level,
            json,
            perturb,
            engine,
        } => eval(&set, &grammars, level, json.as_deref(), &perturb, &engine),
        Command::Upsample {
            out_dir,
            inputs,
            fill,
        } => upsample(&out_dir, &inputs, fill),
        Command::Cost {
            set,
            decoders,
            grammars,
            engine,
        } => cost(&set, decoders, &grammars, &engine),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn load_model(args: &EngineArgs) -> Res<Arc<Model>> {
    let mut paths = ModelPaths::debian_default();
    paths.extra_args = args.ps.clone();
    paths.mllr = match args.mllr.as_str() {
        "none" => None,
        "builtin" => Some(outdial_control::speech::engine::builtin_mllr()?),
        path => Some(path.into()),
    };
    Ok(Model::load(paths, args.fill, calibration(args))?)
}

fn calibration(args: &EngineArgs) -> Calibration {
    match args.calibration.as_deref() {
        Some(&[intercept, acoustic, coverage, worst_word, per_phone]) => Calibration {
            intercept,
            acoustic,
            coverage,
            worst_word,
            per_phone,
        },
        _ => Calibration::default(),
    }
}

fn read_wav(path: &Path) -> Res<Vec<i16>> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.sample_rate != 8000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(format!("{}: want 8 kHz mono 16-bit, got {spec:?}", path.display()).into());
    }
    Ok(reader.samples::<i16>().collect::<Result<_, _>>()?)
}

struct Entry {
    file: String,
    kind: String,
    grammar: String,
    expected: String,
    law: String,
    impairment: String,
    voice: String,
}

fn manifest(set: &Path) -> Res<Vec<Entry>> {
    let text = std::fs::read_to_string(set.join("manifest.tsv"))?;
    text.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 7 {
                return Err(format!("bad manifest line: {line}").into());
            }
            Ok(Entry {
                file: f[0].into(),
                kind: f[1].into(),
                grammar: f[2].into(),
                expected: f[3].into(),
                law: f[4].into(),
                impairment: f[5].into(),
                voice: f[6].into(),
            })
        })
        .collect()
}

fn grammars(dir: &Path) -> Res<BTreeMap<String, Jsgf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsgf") {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.insert(name, Jsgf::new(std::fs::read_to_string(&path)?)?);
        }
    }
    Ok(out)
}

#[derive(Default, serde::Serialize)]
struct Tally {
    in_grammar: usize,
    correct: usize,
    /// Right words whatever the confidence.
    correct_words: usize,
    /// The right meaning (see [`Meanings`]) with confidence at the level.
    correct_meaning: usize,
    /// The right meaning whatever the confidence.
    meaning_right: usize,
    /// Per impairment: (correct, total).
    by_condition: BTreeMap<String, (usize, usize)>,
    oog: usize,
    false_accepts: usize,
    silence: usize,
    noinput: usize,
    latencies_ms: Vec<f64>,
}

#[derive(serde::Serialize)]
struct Decision {
    file: String,
    grammar: String,
    kind: String,
    expected: String,
    text: String,
    /// The hypothesis means what the expected phrase means.
    meaning_right: bool,
    confidence: f32,
    acoustic_per_frame: f32,
    frames: u32,
    loud_frames: u32,
    word_frames: u32,
    worst_word: f32,
    phones: u32,
    law: String,
    impairment: String,
    voice: String,
    latency_ms: f64,
    /// The meaning of the hypothesis, then of each `--perturb` copy's (empty when no speech
    /// was recognised).
    alts: Vec<String>,
    /// The confidence of each `--perturb` copy's hypothesis.
    alt_conf: Vec<f32>,
    expected_meaning: String,
}

/// A perturbed copy of 8 kHz audio (`--perturb`): `shift:N` or `speed:R` (linear
/// interpolation).
fn perturbed(pcm: &[i16], how: &str) -> Res<Vec<i16>> {
    let bad = || format!("--perturb {how:?}: want shift:N or speed:R (R from 0.5 to 2)");
    let (kind, arg) = how.split_once(':').ok_or_else(bad)?;
    match kind {
        "shift" => {
            let n: usize = arg.parse().map_err(|_| bad())?;
            Ok(pcm[n.min(pcm.len())..].to_vec())
        }
        "speed" => {
            let r: f64 = arg.parse().map_err(|_| bad())?;
            if !(0.5..=2.0).contains(&r) {
                return Err(bad().into());
            }
            let last = pcm.len().saturating_sub(1);
            let sample = |j: usize| pcm.get(j.min(last)).map_or(0.0, |&s| f64::from(s));
            let n = (pcm.len() as f64 / r) as usize;
            Ok((0..n)
                .map(|i| {
                    let x = i as f64 * r;
                    let j = x as usize;
                    let f = x - j as f64;
                    (sample(j) + (sample(j + 1) - sample(j)) * f) as i16
                })
                .collect())
        }
        _ => Err(bad().into()),
    }
}

/// What a phrase means, as a VoiceXML field would be filled: the bench grammars that are
/// subsets of a builtin (yes/no of `boolean`, digit strings of `digits`, numbers of `number`,
/// dates of `date`) are read by that builtin's voice form (the SISR value the field gets:
/// "yep" and "yes" are both `true`, "the tenth of june" and "june tenth" both `????0610`);
/// any other grammar's meaning is its words.
struct Meanings {
    builtins: BTreeMap<&'static str, outdial_vxml::srgs::Grammar>,
}

impl Meanings {
    fn new() -> Res<Self> {
        use outdial_vxml::srgs::{Grammar, Mode};
        let mut builtins = BTreeMap::new();
        for (grammar, builtin) in [
            ("yesno", "boolean"),
            ("digits", "digits"),
            ("numbers", "number"),
            ("dates", "date"),
        ] {
            builtins.insert(grammar, Grammar::builtin(builtin, Mode::Voice)?);
        }
        Ok(Self { builtins })
    }

    fn of(&self, grammar: &str, text: &str) -> String {
        use outdial_vxml::srgs::Match;
        let Some(builtin) = self.builtins.get(grammar) else {
            return text.to_owned();
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        match builtin.match_tokens(&tokens) {
            Match::Complete(i) | Match::Extendable(i) => format!("{:?}", i.value),
            _ => format!("words:{text}"),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn eval(
    set: &Path,
    grammar_dir: &Path,
    level: f32,
    json: Option<&Path>,
    perturb: &[String],
    args: &EngineArgs,
) -> Res<()> {
    let model = load_model(args)?;
    let grammars = grammars(grammar_dir)?;
    let mut decoder = Decoder::new(Arc::clone(&model))?;
    let meanings = Meanings::new()?;
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut decisions = Vec::new();
    let started = Instant::now();
    for entry in manifest(set)? {
        let pcm = read_wav(&set.join(&entry.file))?;
        // In-grammar files go to their grammar; out-of-grammar speech and silence to every
        // one, or to the one the manifest names.
        let targets: Vec<&String> = if entry.kind == "in" || entry.grammar != "-" {
            vec![&entry.grammar]
        } else {
            grammars.keys().collect()
        };
        for name in targets {
            let grammar = grammars
                .get(name)
                .ok_or_else(|| format!("no grammar {name}.jsgf"))?;
            let t = Instant::now();
            let Decoded {
                hypothesis,
                acoustic_per_frame,
                frames,
                loud_frames,
                word_frames,
                worst_word,
                phones,
            } = decoder.recognize_detailed(grammar, &pcm)?;
            let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
            let mut alts = Vec::new();
            let mut alt_conf = Vec::new();
            if !hypothesis.text.is_empty() {
                alts.push(meanings.of(name, &hypothesis.text));
                for how in perturb {
                    let d = decoder.recognize_detailed(grammar, &perturbed(&pcm, how)?)?;
                    alts.push(meanings.of(name, &d.hypothesis.text));
                    alt_conf.push(d.hypothesis.confidence);
                }
            }
            let accepted = !hypothesis.text.is_empty() && hypothesis.confidence >= level;
            let meaning_right = entry.kind == "in"
                && !hypothesis.text.is_empty()
                && meanings.of(name, &hypothesis.text) == meanings.of(name, &entry.expected);
            let tally = tallies.entry(name.clone()).or_default();
            match entry.kind.as_str() {
                "in" => {
                    tally.in_grammar += 1;
                    tally.latencies_ms.push(latency_ms);
                    let words = hypothesis.text == entry.expected;
                    tally.correct_words += usize::from(words);
                    tally.correct += usize::from(words && accepted);
                    tally.meaning_right += usize::from(meaning_right);
                    tally.correct_meaning += usize::from(meaning_right && accepted);
                    let c = tally
                        .by_condition
                        .entry(format!("{}-{}", entry.law, entry.impairment))
                        .or_default();
                    c.0 += usize::from(words && accepted);
                    c.1 += 1;
                }
                "oog" => {
                    tally.oog += 1;
                    tally.false_accepts += usize::from(accepted);
                }
                _ => {
                    tally.silence += 1;
                    tally.noinput += usize::from(!accepted);
                }
            }
            decisions.push(Decision {
                file: entry.file.clone(),
                grammar: name.clone(),
                kind: entry.kind.clone(),
                expected: entry.expected.clone(),
                text: hypothesis.text,
                meaning_right,
                confidence: hypothesis.confidence,
                acoustic_per_frame,
                frames,
                loud_frames,
                word_frames,
                worst_word,
                phones,
                law: entry.law.clone(),
                impairment: entry.impairment.clone(),
                voice: entry.voice.clone(),
                latency_ms,
                alts,
                alt_conf,
                expected_meaning: meanings.of(name, &entry.expected),
            });
        }
    }
    let pct = |a: usize, b: usize| {
        if b == 0 {
            0.0
        } else {
            100.0 * a as f64 / b as f64
        }
    };
    let conditions: Vec<String> = tallies
        .values()
        .flat_map(|t| t.by_condition.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    println!(
        "mllr {}, fill {}, pocketsphinx {:?}, {:?}, confidencelevel {level}; {:.0} s\n",
        args.mllr,
        args.fill,
        args.ps,
        calibration(args),
        started.elapsed().as_secs_f64()
    );
    print!("| grammar | accuracy | by meaning | words right | meaning right | ");
    for c in &conditions {
        print!("{c} | ");
    }
    println!("false accepts (out-of-grammar) | noinput on silence | latency p50 / p95 / max ms |");
    println!(
        "|---|---|---|---|---|{}---|---|---|",
        "---|".repeat(conditions.len())
    );
    let mut summary = serde_json::Map::new();
    for (name, tally) in &mut tallies {
        tally.latencies_ms.sort_by(f64::total_cmp);
        let l = &tally.latencies_ms;
        print!(
            "| {name} | {:.1} % ({}/{}) | {:.1} % | {:.1} % | {:.1} % | ",
            pct(tally.correct, tally.in_grammar),
            tally.correct,
            tally.in_grammar,
            pct(tally.correct_meaning, tally.in_grammar),
            pct(tally.correct_words, tally.in_grammar),
            pct(tally.meaning_right, tally.in_grammar)
        );
        for c in &conditions {
            let (ok, n) = tally.by_condition.get(c).copied().unwrap_or_default();
            print!("{:.1} % | ", pct(ok, n));
        }
        println!(
            "{:.1} % ({}/{}) | {:.0} % ({}/{}) | {:.0} / {:.0} / {:.0} |",
            pct(tally.false_accepts, tally.oog),
            tally.false_accepts,
            tally.oog,
            pct(tally.noinput, tally.silence),
            tally.noinput,
            tally.silence,
            percentile(l, 0.5),
            percentile(l, 0.95),
            percentile(l, 1.0)
        );
        summary.insert(name.clone(), serde_json::to_value(&*tally)?);
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "mllr": args.mllr, "fill": args.fill, "calibration": format!("{:?}", calibration(args)),
            "confidencelevel": level, "grammars": summary, "decisions": decisions,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

fn upsample(out_dir: &Path, inputs: &[PathBuf], fill: f32) -> Res<()> {
    let up = outdial_control::speech::frontend::Upsampler::new(fill);
    std::fs::create_dir_all(out_dir)?;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Vec::new();
    for input in inputs {
        up.upsample(&read_wav(input)?, &mut out);
        let name = input.file_name().ok_or("an input has no file name")?;
        let mut writer = hound::WavWriter::create(out_dir.join(name), spec)?;
        for &s in &out {
            writer.write_sample(s)?;
        }
        writer.finalize()?;
    }
    Ok(())
}

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; after the ')' they are the 12th and 13th.
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn cost(set: &Path, decoders: usize, grammar_dir: &Path, args: &EngineArgs) -> Res<()> {
    let base = rss_kib();
    let model = load_model(args)?;
    let grammars = grammars(grammar_dir)?;
    let after_model = rss_kib();
    let mut pool = Vec::new();
    for _ in 0..decoders {
        pool.push(Decoder::new(Arc::clone(&model))?);
    }
    let after_decoders = rss_kib();
    let entries: Vec<(Jsgf, Vec<i16>)> = manifest(set)?
        .into_iter()
        .filter(|e| e.kind == "in")
        .map(|e| Ok((grammars[&e.grammar].clone(), read_wav(&set.join(&e.file))?)))
        .collect::<Res<_>>()?;
    let audio_seconds: f64 = entries
        .iter()
        .map(|(_, pcm)| pcm.len() as f64 / 8000.0)
        .sum();
    let entries = Arc::new(entries);
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let threads: Vec<_> = pool
        .into_iter()
        .map(|mut decoder| {
            let entries = Arc::clone(&entries);
            std::thread::spawn(move || {
                for (grammar, pcm) in entries.iter() {
                    let _ = decoder.recognize(grammar, pcm);
                }
                decoder
            })
        })
        .collect();
    let pool: Vec<Decoder> = threads
        .into_iter()
        .map(|t| t.join().expect("decoder thread"))
        .collect();
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let after_decoding = rss_kib();
    println!("decoders at once: {decoders}");
    println!(
        "RSS: process {base} KiB, model (dictionary) +{} KiB, decoders +{} KiB ({} KiB each), after decoding {} KiB ({} KiB per decoder)",
        after_model - base,
        after_decoders - after_model,
        (after_decoders - after_model) / decoders as u64,
        after_decoding,
        (after_decoding - after_model) / decoders as u64
    );
    println!(
        "audio {:.1} s per decoder, {} utterances; wall {wall:.1} s; CPU {cpu:.1} s = {:.3} CPU-s per audio second ({:.1}x real time per decoder)",
        audio_seconds,
        entries.len(),
        cpu / (audio_seconds * decoders as f64),
        audio_seconds * decoders as f64 / cpu
    );
    drop(pool);
    Ok(())
}
