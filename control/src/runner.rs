//! The call runner: one tokio task per call. It dials through a dataplane core, and once the
//! callee answers it drives the call's VoiceXML [`Session`]: it performs the fetches the
//! session asks for, renders its prompts to audio, hands the audio to the core, and feeds
//! DTMF, playback and hangup events back. It records every status change in the store.
//!
//! The session itself is sans-IO; this task is its I/O.

mod early;
mod fetch_audio;
mod interp;
mod line;
mod machine;
mod speech;

pub use machine::MachineDetectionConfig;
pub use speech::{Recognition, RecognitionFailure, Recognized, Recognizer};

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use outdial_dataplane::api::{
    AmdEvent, CallId, Codec, Command, Dial, Disposition, Event, Outcome, TlsClient,
    TransferError as CoreTransferError, TransferKind as CoreTransferKind,
    TransferOutcome as CoreTransferOutcome, Transport,
};
use outdial_vxml::{
    Action, FetchFailure, FetchPurpose, Fetched, Input, Method as FetchMethod, RecordRequest,
    Recording, Session, SessionConfig, SessionEnd, TransferFailure, TransferKind, TransferOutcome,
    TransferRequest,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::call_timing::{CallTiming, FirstPrompt};
use crate::fetch::Fetcher;
use crate::model::{CallRecord, CallStatus, Direction};
use crate::prompts::PromptRenderer;
use crate::scheduler::task::SchedulerHandle;
use crate::sip_dns::SipDns;
use crate::store::{AnsweredBy, AttemptEnd, Claimed, DataStore, MediaSummary, Transition};
use crate::telephony::TelephonyNode;
use crate::trunk::{Trunk, Trunks};
use crate::webhook::Webhooks;
use fetch_audio::{FetchAudio, Step};
use line::Line;

/// How long a session may keep running after the callee hung up (e.g. a hangup handler
/// that submits), before the runner gives up on it.
const AFTER_HANGUP_GRACE: Duration = Duration::from_secs(10);

/// Beyond ring timeout plus maximum duration, the time allowed for SIP to finish (Timer B,
/// BYE retransmissions) before a call's end is given up on.
const BACKSTOP_SLACK: Duration = Duration::from_secs(90);

/// Playback ids from here up are the runner's own `fetchaudio` clips; the session numbers its
/// prompts from 0 and would need 2^31 prompts in one call to get here.
const FETCHAUDIO_IDS: u32 = 0x8000_0000;

/// What a call task receives besides dataplane events.
#[derive(Debug)]
pub enum CallSignal {
    /// An event from the call's dataplane core.
    Dataplane(Event),
    /// End the call as canceled, for the reason given (an API request, a shutdown).
    Cancel(&'static str),
    /// The prompt player dropped a prompt without playing it (overtaken by barge-in, or the
    /// core's queue was full). Unlike a core's interruption, it moves no barge-in watermark.
    PromptSkipped(u32),
    /// The player could not render prompt `id` (text-to-speech failed or ran out of time, or
    /// an `<audio>` without fallback could not be played): the session throws `event`.
    PromptFailed {
        /// The Play's id.
        id: u32,
        /// `error.noresource` or `error.badfetch`.
        event: &'static str,
        /// Why, for `_message`.
        message: String,
    },
    /// The player rendered prompt `id`: where its `<mark>`s fall in its audio, as sample
    /// offsets (sent before the prompt goes to the core, so before its `PlaybackDone`).
    PromptMarks {
        /// The Play's id.
        id: u32,
        /// Each mark's name and sample offset, in order.
        marks: Vec<(String, usize)>,
    },
}

/// Shared by every call task.
#[derive(Clone)]
pub struct RunnerContext {
    /// The durable store.
    pub store: Arc<dyn DataStore>,
    /// This control node's id (`cluster.node_id`): whose claims these calls are.
    pub node: Arc<str>,
    /// Documents, submits and audio, each call with its tenant's outbound-connection rules.
    pub fetchers: Arc<crate::fetch::TenantFetchers>,
    /// Prompt audio.
    pub prompts: PromptRenderer,
    /// Status callbacks.
    pub webhooks: Webhooks,
    /// Settings the runner needs.
    pub settings: Arc<RunnerSettings>,
    /// The scheduler: a call queued again for a retry goes back to it.
    pub scheduler: SchedulerHandle,
    /// Speech recognition for fields with voice grammars; `None` when `[speech]` is off.
    pub recognizer: Option<Arc<dyn Recognizer>>,
}

/// Runner settings taken from the configuration.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// From URI when the request gives none.
    pub default_from: String,
    /// Ring timeout when the request gives none.
    pub ring_timeout: Duration,
    /// Hard limit on an answered call.
    pub max_duration: Duration,
    /// Largest VoiceXML document fetched.
    pub max_document_bytes: usize,
    /// Limits of each call's VoiceXML session (`[vxml]`).
    pub vxml_limits: outdial_vxml::Limits,
    /// The trunks: each call's proxy, credentials and caller ID come from its tenant's.
    pub trunks: Arc<Trunks>,
    /// The classifier's settings for calls that ask for machine detection.
    pub machine_detection: MachineDetectionConfig,
    /// Finds where SIP for trunk proxies and callee host names goes (RFC 3263).
    pub dns: Arc<SipDns>,
    /// An INVITE nothing answers (not even 100) for this long is given up as unreachable
    /// (and the next address tried); `None` = Timer B.
    pub no_response_timeout: Option<Duration>,
}

/// Runs one attempt of a claimed call (status `dialing`) to its end.
pub async fn run_call(context: RunnerContext, node: Arc<dyn TelephonyNode>, claimed: Claimed) {
    let Claimed { record, attempt } = claimed;
    let (task_tx, rx) = mpsc::unbounded_channel();
    // Signals reach the task through a relay that stops a running session on a cancel.
    let (tx, session_meter) = interp::relay(task_tx);
    let Some(line) = Line::attach(node, &record.id, tx.clone()) else {
        let end = Ended::new(attempt, None);
        finish(
            &context,
            &record,
            end,
            Final::failed("no dataplane core is running"),
            None,
        )
        .await;
        return;
    };
    let (call, core) = (line.placement.call, line.placement.core);
    let ended = Ended::new(attempt, Some(core));
    let ring_timeout = record
        .ring_timeout_secs
        .map_or(context.settings.ring_timeout, Duration::from_secs);
    let prepared = match tenant_trunk(&context, &record.tenant).await {
        Ok((trunk, caller_id)) => {
            let dns = &context.settings.dns;
            let located = match trunk.proxy.as_deref() {
                Some(proxy) => locate_proxy(dns, proxy, trunk.transport).await.map(Some),
                None => locate_callee(dns, &record.target_uri, trunk.transport).await,
            };
            located.map(|targets| (trunk, caller_id, targets))
        }
        Err(reason) => Err(reason),
    };
    let (trunk, tenant_caller_id, targets) = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => {
            line.detach();
            finish(&context, &record, ended, Final::failed(&reason), None).await;
            return;
        }
    };
    let from = match record.from.as_deref() {
        // A bare user or number from an older record: completed with the default host.
        Some(from) if !from.starts_with("sip:") => {
            from_uri(Some(from), &context.settings.default_from)
        }
        request_from => {
            context
                .settings
                .trunks
                .from_uri(&trunk, request_from, tenant_caller_id.as_deref())
        }
    };
    let mut targets: VecDeque<SocketAddr> = targets.unwrap_or_default().into();
    let destination = targets.pop_front();
    let dial = Dial {
        call,
        target: record.target_uri.clone(),
        destination,
        from,
        ring_timeout,
        max_duration: context.settings.max_duration,
        media_latching: trunk.media_latching,
        credentials: trunk.credentials.clone(),
        asserted_identity: trunk.asserted_identity_uri(),
        privacy: trunk.privacy.clone(),
        machine_detection: context
            .settings
            .machine_detection
            .core(record.machine_detection),
        no_response_timeout: context.settings.no_response_timeout,
        transport: trunk.transport,
        tls: trunk.tls.as_ref().map(|tls| TlsClient {
            config: Arc::clone(&tls.0),
            server_name: tls_server_name(trunk.proxy.as_deref(), &record.target_uri),
        }),
    };
    tracing::info!(
        call = %record.id,
        core,
        target = %crate::redact::callee(&record.target_uri),
        destination = %destination.map(|d| d.to_string()).unwrap_or_default(),
        alternatives = targets.len(),
        "dialing"
    );
    metrics::counter!("outdial_calls_dialed_total").increment(1);
    let failover = Failover {
        dial: (!targets.is_empty() || trunk.follow_redirects).then(|| dial.clone()),
        next: targets,
        tried: 1,
        rang: false,
        follow_redirects: trunk.follow_redirects,
        redirects: 0,
    };
    if line.send(Command::Dial(Box::new(dial))).is_err() {
        line.detach();
        finish(
            &context,
            &record,
            ended,
            Final::failed("dataplane core queue is full"),
            None,
        )
        .await;
        return;
    }
    // Request → INVITE counts from when the call was due (its `at`, or a retry's time).
    crate::call_timing::dialed(record.due_at.max(record.created_at));
    let attached = Attached {
        line,
        rx,
        tx,
        session_meter,
        ended,
        failover,
        answer_later: None,
    };
    run_attached(context, record, attempt, attached, ring_timeout).await;
}

/// The channels of a call adopted by the event pump before its task exists (an incoming
/// call): `tx` goes into the dispatcher's table, the rest to the task.
pub struct Adopted {
    /// Where the call's signals go (through the relay that stops a session on a cancel).
    pub tx: mpsc::UnboundedSender<CallSignal>,
    rx: mpsc::UnboundedReceiver<CallSignal>,
    session_meter: interp::SessionMeter,
}

impl Adopted {
    /// Opens new channels; spawns the relay, so call it inside the runtime.
    pub fn open() -> Self {
        let (task_tx, rx) = mpsc::unbounded_channel();
        let (tx, session_meter) = interp::relay(task_tx);
        Self {
            tx,
            rx,
            session_meter,
        }
    }
}

/// Runs an incoming call the core offered and the dispatcher adopted: stores it claimed,
/// answers it, and runs it like any call. A call that cannot be stored is refused 503.
pub async fn run_incoming(
    context: RunnerContext,
    node: Arc<dyn TelephonyNode>,
    placement: crate::telephony::Placement,
    adopted: Adopted,
    new: crate::model::NewCall,
    stored: impl FnOnce(&str) + Send,
) {
    let line = Line::adopt(node, placement);
    let call = placement.call;
    let now = OffsetDateTime::now_utc();
    let lease_until = now + crate::scheduler::task::LEASE;
    let claimed = match context
        .store
        .take_incoming(&context.node, new, lease_until, now)
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::error!(error = %e, "incoming call refused: cannot store it");
            let _ = line.send(Command::Reject {
                call,
                status: 503,
                retry_after: Some(crate::inbound::RETRY_AFTER_SECS),
            });
            line.detach();
            return;
        }
    };
    let Claimed { record, attempt } = claimed;
    stored(&record.id);
    tracing::info!(call = %record.id, core = placement.core, caller = %crate::redact::callee(&record.target_uri), "incoming call");
    // Callers behind NAT are latched as the tenant's trunk says (its carrier sends them).
    let media_latching = match tenant_trunk(&context, &record.tenant).await {
        Ok((trunk, _)) => trunk.media_latching,
        Err(_) => context.settings.trunks.default_trunk().media_latching,
    };
    let max_duration = context.settings.max_duration;
    // `[[inbound]] early_media`: a 183 first, the application on early media, and the 200
    // when `early::AnswerRule` says; otherwise the 200 at once.
    let early_media = record.early_media;
    let answer = if early_media {
        Command::EarlyMedia {
            call,
            max_duration,
            media_latching,
        }
    } else {
        Command::Answer {
            call,
            max_duration,
            media_latching,
        }
    };
    let ended = Ended::new(attempt, Some(placement.core));
    if line.send(answer).is_err() {
        line.detach();
        finish(
            &context,
            &record,
            ended,
            Final::failed("dataplane core queue is full"),
            None,
        )
        .await;
        return;
    }
    notify(&context);
    let Adopted {
        tx,
        rx,
        session_meter,
    } = adopted;
    let attached = Attached {
        line,
        rx,
        tx,
        session_meter,
        ended,
        failover: Failover::default(),
        answer_later: early_media.then_some(AnswerLater {
            max_duration,
            media_latching,
        }),
    };
    // The caller's ACK is due within 64*T1 of our 200 OK: the same bound as a ring timeout,
    // after at most the core's early-media limit.
    let mut answer_timeout = Duration::from_secs(32);
    if early_media {
        answer_timeout += outdial_dataplane::sip::EARLY_MEDIA_LIMIT;
    }
    run_attached(context, record, attempt, attached, answer_timeout).await;
}

/// A call whose line to its core is open, and its channels.
struct Attached {
    line: Line,
    rx: mpsc::UnboundedReceiver<CallSignal>,
    tx: mpsc::UnboundedSender<CallSignal>,
    session_meter: interp::SessionMeter,
    ended: Ended,
    failover: Failover,
    /// An incoming call in early media: how to answer it when `early::AnswerRule` says.
    answer_later: Option<AnswerLater>,
}

/// The [`Command::Answer`] an incoming call in early media is waiting for.
#[derive(Clone, Copy)]
struct AnswerLater {
    max_duration: Duration,
    media_latching: bool,
}

/// RFC 3263 §4.3 for one attempt: the addresses still to try when the current one does not
/// answer at all (no response, an ICMP error) or answers 503.
#[derive(Default)]
struct Failover {
    /// The dial sent, to send again to the next address (`None` without alternatives).
    dial: Option<Dial>,
    /// The addresses not tried yet, best first.
    next: VecDeque<SocketAddr>,
    /// Addresses tried so far, the current one included.
    tried: usize,
    /// A provisional response other than 100 came: the callee may have rung, so the
    /// attempt ends where it is.
    rang: bool,
    /// The trunk follows 3xx redirects.
    follow_redirects: bool,
    /// Redirects followed so far (at most [`crate::trunk::MAX_REDIRECTS`]).
    redirects: u32,
}

/// Whether an attempt that ended this way may go to the next address (RFC 3263 §4.3): no
/// response at all (`Disposition::Unreachable`: Timer B, the no-response timeout, or an ICMP
/// error the core reports at once) or a 503.
fn worth_another_address(outcome: &Outcome) -> bool {
    match outcome.sip_status {
        Some(503) => true,
        Some(_) => false,
        None => outcome.disposition == Disposition::Unreachable,
    }
}

/// Runs a call whose INVITE (or 200 OK, for an incoming one) is on its way, to its end.
async fn run_attached(
    context: RunnerContext,
    record: CallRecord,
    attempt: u32,
    attached: Attached,
    ring_timeout: Duration,
) {
    let Attached {
        line,
        rx,
        tx,
        session_meter,
        ended,
        failover,
        answer_later,
    } = attached;
    let call = line.placement.call;
    let timing = CallTiming::new(Instant::now());
    let record_early_media = record.early_media;
    notify(&context);
    let mut call_task = CallTask {
        timing,
        context: context.clone(),
        record,
        attempt,
        call,
        line,
        rx,
        session: None,
        session_end: None,
        result: None,
        canceled: None,
        hung_up_at: None,
        disconnected: false,
        fetches: JoinSet::new(),
        speech: speech::SpeechInput::new(call, context.recognizer.is_some()),
        recognitions: JoinSet::new(),
        player: None,
        epoch: Arc::new(AtomicU32::new(0)),
        self_tx: tx,
        backstop: Instant::now() + ring_timeout + context.settings.max_duration + BACKSTOP_SLACK,
        transfer: None,
        transferred_to: None,
        sip_call_id: None,
        media: None,
        prompts_in_flight: HashSet::new(),
        prompt_marks: HashMap::new(),
        fetch_audio: None,
        next_fetch_audio: FETCHAUDIO_IDS,
        session_meter,
        detection: None,
        answered_by: None,
        machine_hung_up: false,
        early: early::EarlyMedia::new(record_early_media),
        answer_rule: early::AnswerRule::new(answer_later.is_some()),
        answer_later,
        prompts_done: false,
        awaiting_ack: false,
        deferred_transfer: None,
        failover,
    };
    let outcome = call_task.run().await;
    call_task.line.detach();
    let final_state = call_task.final_state(outcome);
    let mut ended = ended;
    // After a failover the call ended on the core of its last address.
    ended.core = ended.core.map(|_| call_task.line.placement.core);
    ended.sip_call_id = call_task.sip_call_id.take();
    ended.media = call_task.media.take();
    // Freeing the session's script context waits for its turn at a shared runtime; a session
    // whose application never needed one has nothing shared to free.
    let session = call_task.session.take();
    if session.as_ref().is_some_and(Session::script_started) {
        interp::off_runtime(|| drop(session));
    } else {
        drop(session);
    }
    finish(
        &context,
        &call_task.record,
        ended,
        final_state,
        call_task.result.take(),
    )
    .await;
}

/// Which attempt ended, and where it ran.
#[derive(Clone)]
struct Ended {
    attempt: u32,
    core: Option<usize>,
    /// The attempt's SIP Call-ID, once the core reported it.
    sip_call_id: Option<String>,
    /// The attempt's media counters, when it had media.
    media: Option<MediaSummary>,
}

impl Ended {
    fn new(attempt: u32, core: Option<usize>) -> Self {
        Self {
            attempt,
            core,
            sip_call_id: None,
            media: None,
        }
    }
}

/// What a CDR keeps of the dataplane's counters.
fn media_summary(media: &outdial_dataplane::api::MediaStats) -> MediaSummary {
    MediaSummary {
        packets_sent: media.packets_sent,
        packets_received: media.packets_received,
        packets_lost: media.packets_lost,
        jitter_us: media.jitter_us,
        max_jitter_us: media.max_jitter_us,
        sent_late_2ms: media.sent_late_2ms,
        dropped_foreign: media.dropped_foreign,
        round_trip_us: (media.round_trip_us > 0).then_some(media.round_trip_us),
    }
}

/// The final state of a call, as stored.
struct Final {
    status: CallStatus,
    disposition: Option<Disposition>,
    sip_status: Option<u16>,
    reason: String,
}

impl Final {
    fn failed(reason: &str) -> Self {
        Self {
            status: CallStatus::Failed,
            disposition: None,
            sip_status: None,
            reason: reason.to_owned(),
        }
    }
}

struct CallTask {
    /// Setup delays for the histograms.
    timing: CallTiming,
    /// The SIP Call-ID of this attempt, from the core's events.
    sip_call_id: Option<String>,
    /// The attempt's media counters, from the core's end of call.
    media: Option<MediaSummary>,
    context: RunnerContext,
    record: CallRecord,
    /// This attempt's number.
    attempt: u32,
    call: CallId,
    /// Where the call runs: its telephony node and its place there.
    line: Line,
    rx: mpsc::UnboundedReceiver<CallSignal>,
    session: Option<Session>,
    session_end: Option<SessionEnd>,
    result: Option<Value>,
    /// Why the call is being canceled, once it is.
    canceled: Option<&'static str>,
    hung_up_at: Option<Instant>,
    /// The application ran `<disconnect>`: the session already knows the call is gone (it
    /// raised `connection.disconnect.hangup` itself), so the call's end is not reported to it.
    disconnected: bool,
    fetches: JoinSet<(u32, Result<Fetched, FetchFailure>)>,
    /// Listening for speech while the session collects with voice grammars.
    speech: speech::SpeechInput,
    /// Recognitions under way, by listen id.
    recognitions: JoinSet<(u32, Result<Recognized, RecognitionFailure>)>,
    player: Option<Player>,
    /// The call's barge-in count as last reported by its core (`Event::BargeIn`); shared
    /// with the player, which skips prompts issued in an earlier epoch.
    epoch: Arc<AtomicU32>,
    /// This call's own signal channel, for the player's synthetic events.
    self_tx: mpsc::UnboundedSender<CallSignal>,
    /// Past this, a call whose end the dataplane never reported is given up as failed.
    backstop: Instant,
    /// The blind transfer the core is carrying out: its id and destination.
    transfer: Option<(u32, String)>,
    /// Where the caller was transferred (blind transfer succeeded; the core hangs up our leg).
    transferred_to: Option<String>,
    /// The session's prompts handed to the player and not yet reported done.
    prompts_in_flight: HashSet<u32>,
    /// Where the `<mark>`s of rendered prompts fall, by Play id (samples), until done.
    prompt_marks: HashMap<u32, Vec<(String, usize)>>,
    /// The outstanding document or submit fetch that carries `fetchaudio`.
    fetch_audio: Option<PendingFetchAudio>,
    /// The playback id of the next `fetchaudio` clip (at least [`FETCHAUDIO_IDS`]).
    next_fetch_audio: u32,
    /// The session's script meter, which a cancel stops even while the session runs.
    session_meter: interp::SessionMeter,
    /// Answering-machine detection holding the application back, from the answer on.
    detection: Option<machine::Detection>,
    /// Who answered, once detection decided (`session.connection.outdial.answered_by`).
    answered_by: Option<&'static str>,
    /// A machine answered and the request said `hangup`: we ended the call.
    machine_hung_up: bool,
    /// When the application starts: on early media (the request's `early_media`) or at
    /// the answer.
    early: early::EarlyMedia,
    /// An incoming call in early media: when its 200 OK goes.
    answer_rule: early::AnswerRule,
    /// The answer it then sends.
    answer_later: Option<AnswerLater>,
    /// The last prompt in flight just finished: once the session has taken that in (it may
    /// end or disconnect now, refusing the call), the call in early media is answered.
    prompts_done: bool,
    /// Our 200 OK to an incoming call in early media is out and its ACK not in yet.
    awaiting_ack: bool,
    /// A transfer asked for before that ACK: its REFER waits for the confirmed dialog.
    deferred_transfer: Option<TransferRequest>,
    /// The other addresses of the callee's host or the trunk, for RFC 3263 failover.
    failover: Failover,
}

/// A fetch with `fetchaudio` (VoiceXML 2.0 §6.1.1): its schedule, and its result while the
/// audio's minimum play time holds it back from the session.
struct PendingFetchAudio {
    fetch: u32,
    url: String,
    /// The clip's playback id.
    play: u32,
    schedule: FetchAudio,
    held: Option<Result<Fetched, FetchFailure>>,
}

impl CallTask {
    /// Runs until the dataplane reports the call ended and the session (if any) is over.
    async fn run(&mut self) -> Outcome {
        let mut outcome: Option<Outcome> = None;
        loop {
            if let Some(done) = &outcome {
                let session_over = self.session.is_none() || self.session_end.is_some();
                let grace_over = self
                    .hung_up_at
                    .is_some_and(|t| t.elapsed() > AFTER_HANGUP_GRACE);
                if session_over || grace_over {
                    return done.clone();
                }
            }
            let deadline = self.session.as_ref().and_then(Session::poll_timeout);
            let fetch_audio_at = self
                .fetch_audio
                .as_ref()
                .and_then(|pending| pending.schedule.poll_timeout());
            let detection_at = self
                .detection
                .as_ref()
                .and_then(machine::Detection::deadline);
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None if outcome.is_some() => tokio::time::sleep(AFTER_HANGUP_GRACE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = self.rx.recv() => match signal {
                    Some(CallSignal::Dataplane(event)) => {
                        if let Some(ended) = self.handle_event(event).await {
                            outcome = Some(ended);
                        }
                    }
                    Some(CallSignal::Cancel(reason)) => {
                        // A call already ending keeps its real outcome; a session the cancel
                        // stopped ends because of it.
                        if outcome.is_none()
                            && (self.session_end.is_none() || interp::stopped(&self.session_meter))
                        {
                            self.canceled = Some(reason);
                            self.hangup();
                        }
                    }
                    Some(CallSignal::PromptMarks { id, marks }) => {
                        self.prompt_marks.insert(id, marks);
                    }
                    Some(CallSignal::PromptSkipped(id)) => {
                        self.playback_done(id, true, 0);
                        self.perform_actions().await;
                    }
                    Some(CallSignal::PromptFailed { id, event, message }) => {
                        self.prompt_failed(id, event, message);
                        self.perform_actions().await;
                    }
                    None => return Outcome {
                        disposition: Disposition::Failed,
                        sip_status: None,
                        reason: "dataplane stopped during the call".into(),
                    },
                },
                Some(joined) = self.recognitions.join_next(), if !self.recognitions.is_empty() => {
                    if let Ok((id, result)) = joined {
                        let step = self.speech.on_result(id, result);
                        self.speech_step(step);
                        self.perform_actions().await;
                    }
                }
                Some(joined) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    if let Ok((id, result)) = joined {
                        self.fetched(id, result);
                        self.perform_actions().await;
                    }
                }
                () = tokio::time::sleep_until(fetch_audio_at.unwrap_or(self.backstop).into()),
                    if fetch_audio_at.is_some() =>
                {
                    if let Some(pending) = self.fetch_audio.as_mut() {
                        let step = pending.schedule.handle_timeout(Instant::now());
                        self.fetch_audio_step(step);
                    }
                    self.perform_actions().await;
                }
                () = tokio::time::sleep_until(detection_at.unwrap_or(self.backstop).into()),
                    if detection_at.is_some() && outcome.is_none() =>
                {
                    let step = self
                        .detection
                        .as_mut()
                        .map_or(machine::Step::Wait, |d| d.on_timeout(Instant::now()));
                    if step != machine::Step::Wait {
                        tracing::warn!(call = %self.record.id, "no machine detection verdict from the core in time; starting the application");
                    }
                    self.machine_step(step).await;
                }
                () = tokio::time::sleep_until(self.backstop.into()), if outcome.is_none() => {
                    tracing::error!(call = %self.record.id, "no end reported by the dataplane in time");
                    return Outcome {
                        disposition: Disposition::Failed,
                        sip_status: None,
                        reason: "the telephony core never reported the call's end (did it stop?)".into(),
                    };
                }
                () = sleep => {
                    if let Some(session) = self.session.as_mut() {
                        interp::off_runtime(|| session.handle_timeout(Instant::now()));
                    }
                    self.perform_actions().await;
                }
            }
        }
    }

    /// RFC 3263 §4.3: after an end that `worth_another_address` allows, before any ringing,
    /// sends the INVITE to the next address as a new dataplane call within this attempt.
    /// `false` when there is none or it could not be sent (the call then ends as reported).
    fn fail_over(&mut self, outcome: &Outcome) -> bool {
        if self.failover.rang
            || self.canceled.is_some()
            || self.session.is_some()
            || !worth_another_address(outcome)
        {
            return false;
        }
        let Some(mut dial) = self.failover.dial.clone() else {
            return false;
        };
        let Some(destination) = self.failover.next.pop_front() else {
            return false;
        };
        // Detach first: the node keys calls by public id too, and a detach after the new
        // attach would forget the new placement's id.
        self.line.detach();
        let Some(line) = self.line.reattach(&self.record.id, self.self_tx.clone()) else {
            tracing::warn!(call = %self.record.id, "no dataplane core left for the next address");
            return false;
        };
        dial.call = line.placement.call;
        dial.destination = Some(destination);
        let (ring_timeout, max_duration) = (dial.ring_timeout, dial.max_duration);
        self.failover.tried += 1;
        tracing::info!(
            call = %self.record.id,
            core = line.placement.core,
            %destination,
            tried = self.failover.tried,
            left = self.failover.next.len(),
            previous = %outcome.reason,
            "failing over to the next address (RFC 3263)"
        );
        if line.send(Command::Dial(Box::new(dial))).is_err() {
            line.detach();
            tracing::warn!(call = %self.record.id, "dataplane core queue is full; no failover");
            return false;
        }
        self.call = line.placement.call;
        self.line = line;
        self.sip_call_id = None;
        self.backstop = Instant::now() + ring_timeout + max_duration + BACKSTOP_SLACK;
        true
    }

    /// A 3xx the trunk lets us follow: the INVITE goes to its Contact, located like a callee
    /// (RFC 3263) and checked address by address against the tenant's egress rules (a
    /// redirect must not reach what the tenant may not), as a new dataplane call within this
    /// attempt. `Ok(false)`: not a redirect to follow; `Err`: why this one was not.
    async fn follow_redirect(
        &mut self,
        outcome: &Outcome,
        target: Option<&str>,
    ) -> Result<bool, String> {
        let redirected = matches!(outcome.sip_status, Some(300..=399));
        if !redirected
            || !self.failover.follow_redirects
            || self.canceled.is_some()
            || self.session.is_some()
        {
            return Ok(false);
        }
        if self.failover.redirects >= crate::trunk::MAX_REDIRECTS {
            return Err(format!(
                "not followed: {} redirects already",
                crate::trunk::MAX_REDIRECTS
            ));
        }
        let Some(target) = target else {
            return Err("the redirect names no Contact".to_owned());
        };
        if outdial_dataplane::sip::target::dial_target(target).is_err() {
            return Err(format!(
                "the redirect's Contact {} is not a sip: URI we dial",
                crate::redact::callee(target)
            ));
        }
        // A redirect's Contact says its own transport (`;transport=`), which the core follows;
        // its host is looked up for UDP.
        let located = match locate_callee(&self.context.settings.dns, target, Transport::Udp).await
        {
            Ok(Some(found)) => found,
            Ok(None) => {
                let literal = outdial_dataplane::sip::target::dial_target(target)
                    .ok()
                    .and_then(|t| t.socket_addr());
                literal.into_iter().collect()
            }
            Err(e) => return Err(format!("the redirect cannot be followed: {e}")),
        };
        let Some(&first) = located.first() else {
            return Err("the redirect's host has no address".to_owned());
        };
        let fetcher = self.context.fetchers.for_tenant(&self.record.tenant);
        if let Some(refused) = located
            .iter()
            .find_map(|a| fetcher.egress().check(a.ip()).err())
        {
            tracing::warn!(call = %self.record.id, "redirect refused: {refused}");
            return Err(format!("the redirect was refused: {refused}"));
        }
        let Some(mut dial) = self.failover.dial.clone() else {
            return Ok(false);
        };
        self.line.detach();
        let Some(line) = self.line.reattach(&self.record.id, self.self_tx.clone()) else {
            return Err("no dataplane core left to follow the redirect".to_owned());
        };
        dial.call = line.placement.call;
        dial.target = target.to_owned();
        dial.destination = Some(first);
        let (ring_timeout, max_duration) = (dial.ring_timeout, dial.max_duration);
        self.failover.redirects += 1;
        self.failover.next = located.into_iter().skip(1).collect();
        self.failover.rang = false;
        self.failover.dial = Some(dial.clone());
        tracing::info!(
            call = %self.record.id,
            core = line.placement.core,
            target = %crate::redact::callee(target),
            destination = %first,
            redirects = self.failover.redirects,
            previous = %outcome.reason,
            "following the redirect"
        );
        if line.send(Command::Dial(Box::new(dial))).is_err() {
            line.detach();
            return Err("the dataplane core's queue is full".to_owned());
        }
        self.call = line.placement.call;
        self.line = line;
        self.sip_call_id = None;
        self.backstop = Instant::now() + ring_timeout + max_duration + BACKSTOP_SLACK;
        Ok(true)
    }

    /// Asks the core to end the call. A full command queue is retried, never given up on:
    /// a hangup the application or the API asked for must happen.
    fn hangup(&self) {
        self.send_surely(Command::Hangup { call: self.call });
    }

    /// An incoming call in early media: the application did `step`; answers (200 OK) when
    /// `early::AnswerRule` says so.
    fn answer_on(&mut self, step: early::Step) {
        let Some(later) = self.answer_later else {
            return;
        };
        if self.canceled.is_some() || self.hung_up_at.is_some() || self.disconnected {
            self.answer_rule.settled();
            return;
        }
        if self.answer_rule.on(step) {
            tracing::info!(call = %self.record.id, ?step, "answering after early media");
            self.awaiting_ack = true;
            self.send_surely(Command::Answer {
                call: self.call,
                max_duration: later.max_duration,
                media_latching: later.media_latching,
            });
        }
    }

    /// Sends `command` to the call's core, retrying while its queue is full: a hangup or an
    /// answer must happen.
    fn send_surely(&self, command: Command) {
        if let Err(command) = self.line.send(command) {
            let line = self.line.clone();
            tokio::spawn(async move {
                let mut command = command;
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    match line.send(command) {
                        Ok(()) => break,
                        Err(back) => command = back,
                    }
                }
            });
        }
    }

    /// Keeps the call's SIP Call-ID the first time the core reports it, and adds it to the
    /// call's log span so every later line carries it.
    fn learn_sip_call_id(&mut self, sip_call_id: Option<String>) {
        if self.sip_call_id.is_none() {
            if let Some(id) = &sip_call_id {
                tracing::Span::current().record("sip_call_id", tracing::field::display(id));
            }
            self.sip_call_id = sip_call_id;
        }
    }

    async fn handle_event(&mut self, event: Event) -> Option<Outcome> {
        match event {
            // Registrations are not a call's, and an incoming call's offer is handled before
            // its task exists; the event pump never routes either here.
            Event::Registration { .. } | Event::Unregistered { .. } | Event::Incoming(_) => {}
            Event::Ringing { .. } => {
                self.failover.rang = true;
                self.timing.progress(Instant::now());
                self.transition(CallStatus::Ringing, "the callee is ringing")
                    .await;
            }
            Event::EarlyMedia {
                codec, sip_call_id, ..
            } => {
                self.learn_sip_call_id(sip_call_id);
                let step = self.early.on_early_media(self.canceled.is_some());
                if step != early::OnEarlyMedia::Ignore {
                    let starts = step == early::OnEarlyMedia::NoteAndStart;
                    tracing::info!(call = %self.record.id, codec = codec_name(codec), application = starts, "early media");
                    let cause = if self.record.direction == Direction::Inbound {
                        early::INBOUND_CAUSE
                    } else {
                        early::CAUSE
                    };
                    self.note_early_media(cause).await;
                    if starts && self.session.is_none() {
                        self.start_session().await;
                    }
                }
            }
            Event::Answered {
                codec, sip_call_id, ..
            } => {
                self.learn_sip_call_id(sip_call_id);
                self.answer_rule.settled();
                self.awaiting_ack = false;
                self.timing.answer(Instant::now());
                tracing::info!(call = %self.record.id, codec = codec_name(codec), "answered");
                self.transition(CallStatus::InProgress, "the callee answered")
                    .await;
                let on_answer = self.early.on_answer();
                if self.canceled.is_some() {
                    self.hangup();
                } else if let Some(detection) = machine::Detection::start(
                    self.record.machine_detection,
                    &self.context.settings.machine_detection,
                    Instant::now(),
                ) {
                    // The application waits for the verdict (one already running since early
                    // media goes on: the verdict is kept, and `hangup` still hangs up).
                    self.detection = Some(detection);
                } else if on_answer == early::OnAnswer::Start {
                    self.start_session().await;
                }
                if let Some(request) = self.deferred_transfer.take()
                    && self.canceled.is_none()
                {
                    // Answered on early media for this transfer: its REFER goes in the
                    // dialog the caller's ACK confirmed.
                    self.start_transfer(request);
                    self.perform_actions().await;
                }
            }
            Event::Dtmf { digit, .. } => {
                tracing::debug!(call = %self.record.id, digit = %crate::redact::input(&digit), "dtmf");
                self.input(Input::Dtmf(digit));
                self.perform_actions().await;
            }
            Event::SpeechStarted { id, .. } => {
                tracing::debug!(call = %self.record.id, id, "speech started");
                let step = self.speech.on_speech_started(id);
                self.speech_step(step);
                self.perform_actions().await;
            }
            Event::Utterance {
                id,
                pcm,
                max_speech,
                ..
            } => {
                tracing::debug!(
                    call = %self.record.id,
                    id,
                    duration_ms = pcm.len() as u64 / 8,
                    max_speech,
                    "utterance"
                );
                let step = self.speech.on_utterance(id, pcm, max_speech);
                self.speech_step(step);
                self.perform_actions().await;
            }
            Event::BargeIn { epoch, .. } => {
                // Comes before the key that caused it, so prompts the session issues in
                // answer to that key already carry the new epoch.
                self.epoch.fetch_max(epoch, Ordering::AcqRel);
            }
            Event::PlaybackDone {
                id,
                interrupted,
                played,
                ..
            } => {
                self.playback_done(id, interrupted, played);
                self.perform_actions().await;
            }
            Event::Recorded {
                id,
                pcm,
                termchar,
                maxtime,
                silent,
                ..
            } => {
                let duration = Duration::from_millis(pcm.len() as u64 / 8);
                tracing::info!(
                    call = %self.record.id,
                    id,
                    duration_ms = duration.as_millis() as u64,
                    termchar = %termchar.map(String::from).unwrap_or_default(),
                    maxtime,
                    silent,
                    "recorded"
                );
                let recording = Recording {
                    content_type: WAV_MEDIA_TYPE.to_owned(),
                    audio: Recording::wav_file(&pcm, 8000),
                    duration,
                    termchar,
                    maxtime,
                    silent,
                };
                self.input(Input::Recorded {
                    id,
                    result: Ok(recording),
                });
                self.perform_actions().await;
            }
            Event::TransferDone {
                id, result, detail, ..
            } => {
                self.transfer_done(id, result, &detail);
                self.perform_actions().await;
            }
            Event::MachineDetection { event, .. } => self.machine_event(event).await,
            Event::MediaSourceRefused { from, .. } => {
                // Once per call: the rest are counted and reported when the call ends.
                if self.record.direction == Direction::Inbound {
                    tracing::warn!(
                        call = %self.record.id,
                        %from,
                        "RTP dropped for its source (not the address and port the caller's SDP \
                         named, or not the source the call latched to); a caller behind NAT \
                         needs media_latching = true on the tenant's trunk"
                    );
                } else {
                    tracing::warn!(
                        call = %self.record.id,
                        %from,
                        "RTP dropped for its source (not the address and port the callee's SDP \
                         named, or not the source the call latched to); a callee behind NAT \
                         needs media_latching = true on the tenant's trunk ([sip] for the \
                         default one)"
                    );
                }
            }
            Event::Ended {
                mut outcome,
                sip_call_id,
                media,
                redirect,
                ..
            } => {
                if self.fail_over(&outcome) {
                    return None;
                }
                match self.follow_redirect(&outcome, redirect.as_deref()).await {
                    Ok(true) => return None,
                    Ok(false) => {}
                    Err(why) => outcome.reason = format!("{}; {why}", outcome.reason),
                }
                if self.failover.tried > 1 {
                    let tried = self.failover.tried;
                    outcome.reason = format!("{}; {tried} addresses tried", outcome.reason);
                }
                self.learn_sip_call_id(sip_call_id);
                if let Some(media) = media {
                    crate::telemetry::media_ended(&media);
                    self.media = Some(media_summary(&media));
                    tracing::debug!(
                        call = %self.record.id,
                        packets_sent = media.packets_sent,
                        packets_received = media.packets_received,
                        dropped_source = media.dropped_foreign,
                        dropped_malformed = media.dropped_malformed,
                        "media"
                    );
                }
                tracing::info!(
                    call = %self.record.id,
                    disposition = disposition_label(outcome.disposition),
                    sip_status = outcome.sip_status.unwrap_or(0),
                    reason = %outcome.reason,
                    "call ended"
                );
                self.player = None;
                self.prompts_in_flight.clear();
                self.prompt_marks.clear();
                if let Some(pending) = self.fetch_audio.as_mut()
                    && pending.schedule.playing()
                {
                    let step = pending.schedule.audio_ended();
                    self.fetch_audio_step(step);
                }
                if self.session.is_some() && self.session_end.is_none() {
                    self.hung_up_at = Some(Instant::now());
                    // After a blind transfer the session already threw
                    // `connection.disconnect.transfer`: our leg's end is no news to it.
                    if !self.disconnected && self.transferred_to.is_none() {
                        self.input(Input::Hangup);
                    }
                    self.perform_actions().await;
                }
                return Some(outcome);
            }
        }
        None
    }

    /// The core's answering-machine detection event: the verdict is stored and logged, and
    /// the request's mode decides whether the application starts, waits or the call ends.
    async fn machine_event(&mut self, event: AmdEvent) {
        let now = Instant::now();
        let Some(detection) = self.detection.as_mut() else {
            return;
        };
        let step = detection.on_event(&event, now);
        match event {
            AmdEvent::Classified {
                answered_by,
                after,
                reason,
            } if self.answered_by.is_none() => {
                let name = answered_by.as_str();
                self.answered_by = Some(name);
                tracing::info!(call = %self.record.id, answered_by = name, reason, after_ms = after.as_millis() as u64, "machine detection");
                metrics::counter!("outdial_machine_detection_total", "answered_by" => name)
                    .increment(1);
                let verdict = AnsweredBy {
                    answered_by: name.to_owned(),
                    decided_ms: u32::try_from(after.as_millis()).unwrap_or(u32::MAX),
                    at: OffsetDateTime::now_utc(),
                    cause: machine::cause(answered_by, reason, after),
                };
                match self
                    .context
                    .store
                    .record_answered_by(&self.record.id, self.attempt, verdict)
                    .await
                {
                    Ok(record) => self.record = record,
                    Err(e) => {
                        tracing::error!(call = %self.record.id, error = %e, "cannot store who answered")
                    }
                }
            }
            AmdEvent::Beep { after } => {
                tracing::info!(call = %self.record.id, after_ms = after.as_millis() as u64, "machine beep heard");
            }
            AmdEvent::NoBeep { after } => {
                tracing::info!(call = %self.record.id, after_ms = after.as_millis() as u64, "no machine beep; starting the application");
            }
            AmdEvent::Classified { .. } => {}
        }
        self.machine_step(step).await;
    }

    /// Carries out what detection decided.
    async fn machine_step(&mut self, step: machine::Step) {
        match step {
            machine::Step::Wait => {}
            machine::Step::StartSession => {
                if self.canceled.is_none() && self.session.is_none() {
                    self.start_session().await;
                }
            }
            machine::Step::HangUp => {
                self.machine_hung_up = true;
                self.hangup();
            }
        }
    }

    async fn start_session(&mut self) {
        let vars = self
            .record
            .vars
            .iter()
            .map(|(name, value)| (name.clone(), value.to_string()))
            .collect();
        let config = SessionConfig {
            url: self.record.url.clone(),
            vars,
            local_uri: from_uri(
                self.record.from.as_deref(),
                &self.context.settings.default_from,
            ),
            remote_uri: self.record.target_uri.clone(),
            answered_by: self.answered_by.map(str::to_owned),
            limits: self.context.settings.vxml_limits,
        };
        // In place: starting a session parses its URL and records its variables; it starts no
        // script context (that waits for the application's first expression, in a later step
        // that runs off the workers), so it cannot wait on another session's script.
        match Session::new(config, Instant::now()) {
            Ok(session) => {
                let _ = self.session_meter.set(session.meter());
                self.session = Some(session);
                self.player = Some(spawn_player(
                    self.context.clone(),
                    &self.record,
                    self.line.clone(),
                    self.call,
                    Arc::clone(&self.epoch),
                    self.self_tx.clone(),
                    FirstPrompt::new(self.timing.answered()),
                ));
                self.perform_actions().await;
            }
            Err(e) => {
                self.session_end = Some(SessionEnd::Error {
                    event: "error.semantic".into(),
                    message: format!("cannot start the VoiceXML session: {e}"),
                });
                self.hangup();
            }
        }
    }

    /// Asks the core to record the callee; answers at once when the call is gone or the
    /// core's queue is full.
    fn start_recording(&mut self, request: &RecordRequest) {
        if request.media_type != WAV_MEDIA_TYPE {
            tracing::debug!(call = %self.record.id, wanted = %request.media_type, "recording as audio/wav instead");
        }
        let failure = if self.hung_up_at.is_some() {
            Some("the call has ended: nothing to record")
        } else {
            let command = Command::Record {
                call: self.call,
                id: request.id,
                max_time: request.max_time,
                final_silence: request.final_silence,
                no_input: request.timeout,
                dtmfterm: request.dtmfterm,
                beep: request.beep,
            };
            self.line
                .send(command)
                .err()
                .map(|_| "the telephony core's queue is full: cannot record now")
        };
        if let Some(reason) = failure {
            self.input(Input::Recorded {
                id: request.id,
                result: Err(reason.to_owned()),
            });
        }
    }

    /// Carries out a step of the call's speech input.
    fn speech_step(&mut self, step: speech::Step) {
        match step {
            speech::Step::None => {}
            speech::Step::Command(command) => {
                if self.line.send(command).is_err() {
                    tracing::warn!(call = %self.record.id, "the telephony core's queue is full: speech input not started or stopped");
                }
            }
            speech::Step::Input(input) => self.input(input),
            speech::Step::Recognize { id, grammars, pcm } => {
                let started = match &self.context.recognizer {
                    Some(recognizer) => recognizer.recognize(&grammars, pcm),
                    None => Err(RecognitionFailure {
                        event: "error.noresource",
                        message: "no speech recognizer on this server".to_owned(),
                    }),
                };
                match started {
                    Ok(recognition) => {
                        self.recognitions
                            .spawn(async move { (id, recognition.await) });
                    }
                    Err(failure) => {
                        tracing::warn!(call = %self.record.id, event = failure.event, "speech not recognised: {}", failure.message);
                        let step = self.speech.on_result(id, Err(failure));
                        self.speech_step(step);
                    }
                }
            }
        }
    }

    /// Starts a `<transfer>`: a blind one is a REFER from the core (answered later by
    /// `Event::TransferDone`); bridge and consultation transfers are refused at once.
    fn start_transfer(&mut self, request: TransferRequest) {
        let unsupported = match request.kind {
            TransferKind::Blind => None,
            TransferKind::Bridge => Some("bridge"),
            TransferKind::Consultation => Some("consultation"),
        };
        let failure = if let Some(kind) = unsupported {
            tracing::info!(call = %self.record.id, dest = %crate::redact::callee(&request.dest), kind, "transfer refused: not supported");
            Some(TransferFailure {
                event: format!("error.unsupported.transfer.{kind}"),
                message: format!(
                    "this platform only does blind transfers ({kind} transfer to {} asked); use type=\"blind\" (or bridge=\"false\")",
                    request.dest
                ),
            })
        } else if self.hung_up_at.is_some() || self.disconnected {
            Some(TransferFailure {
                event: "error.connection".into(),
                message: "the call has ended: nobody to transfer".into(),
            })
        } else {
            if request.aai.is_some() {
                tracing::debug!(call = %self.record.id, "aai is not sent with a blind transfer");
            }
            let command = Command::Transfer {
                call: self.call,
                id: request.id,
                target: request.dest.clone(),
                kind: CoreTransferKind::Blind,
                connect_timeout: request.connect_timeout,
            };
            match self.line.send(command) {
                Ok(()) => {
                    tracing::info!(call = %self.record.id, dest = %crate::redact::callee(&request.dest), "blind transfer: REFER sent");
                    self.transfer = Some((request.id, request.dest));
                    None
                }
                Err(_) => Some(TransferFailure {
                    event: "error.connection".into(),
                    message: "the telephony core's queue is full: cannot transfer now".into(),
                }),
            }
        };
        if let Some(failure) = failure {
            self.input(Input::TransferDone {
                id: request.id,
                result: Err(failure),
            });
        }
    }

    /// The core's answer to a blind transfer, in VoiceXML terms.
    fn transfer_done(
        &mut self,
        id: u32,
        result: Result<CoreTransferOutcome, CoreTransferError>,
        detail: &str,
    ) {
        let dest = match self.transfer.take() {
            Some((pending, dest)) if pending == id => dest,
            other => {
                self.transfer = other;
                return;
            }
        };
        let outcome = match &result {
            Ok(outcome) => transfer_outcome(*outcome).name().to_owned(),
            Err(error) => error.to_string(),
        };
        tracing::info!(call = %self.record.id, dest = %crate::redact::callee(&dest), %outcome, detail, "transfer ended");
        let result = match result {
            Ok(outcome) => Ok(transfer_outcome(outcome)),
            Err(error) => Err(TransferFailure {
                event: transfer_error_event(error).to_owned(),
                message: format!("transfer to {dest}: {error} ({detail})"),
            }),
        };
        if result == Ok(TransferOutcome::Transferred) {
            self.transferred_to = Some(dest);
        }
        self.input(Input::TransferDone { id, result });
    }

    fn input(&mut self, input: Input) {
        if let Some(session) = self.session.as_mut() {
            interp::off_runtime(|| session.handle_input(Instant::now(), input));
        }
    }

    /// The core (or the player) is done with playback `id`: a session prompt, or a
    /// `fetchaudio` clip the session knows nothing of.
    /// `played` samples of it went out: the last `<mark>` passed is reported first.
    fn playback_done(&mut self, id: u32, interrupted: bool, played: usize) {
        if id >= FETCHAUDIO_IDS {
            tracing::info!(call = %self.record.id, id, interrupted, "fetchaudio ended");
            if let Some(pending) = self.fetch_audio.as_mut()
                && pending.play == id
            {
                let step = pending.schedule.audio_ended();
                self.fetch_audio_step(step);
            }
            return;
        }
        if self.prompts_in_flight.remove(&id) && self.prompts_in_flight.is_empty() {
            self.prompts_done = true;
            if let Some(pending) = self.fetch_audio.as_mut() {
                let step = pending.schedule.prompts_idle(Instant::now());
                self.fetch_audio_step(step);
            }
        }
        if let Some(marks) = self.prompt_marks.remove(&id)
            && let Some((name, since)) = mark_at(&marks, played)
        {
            self.input(Input::MarkReached {
                id,
                name: name.to_owned(),
                since,
            });
        }
        self.input(Input::PlaybackDone { id, interrupted });
    }

    /// Prompt `id` could not be rendered: it is over (as for [`Self::playback_done`]), and the
    /// session throws `event` where it waits.
    fn prompt_failed(&mut self, id: u32, event: &'static str, message: String) {
        tracing::warn!(call = %self.record.id, id, event, "prompt could not be rendered");
        if self.prompts_in_flight.remove(&id) && self.prompts_in_flight.is_empty() {
            self.prompts_done = true;
            if let Some(pending) = self.fetch_audio.as_mut() {
                let step = pending.schedule.prompts_idle(Instant::now());
                self.fetch_audio_step(step);
            }
        }
        self.prompt_marks.remove(&id);
        self.input(Input::PlaybackFailed {
            id,
            event: event.to_owned(),
            message,
        });
    }

    /// Fetch `id` completed: its result goes to the session, unless its `fetchaudio` holds
    /// it back for a while.
    fn fetched(&mut self, id: u32, result: Result<Fetched, FetchFailure>) {
        match self.fetch_audio.as_mut() {
            Some(pending) if pending.fetch == id => {
                pending.held = Some(result);
                let step = pending.schedule.fetch_done(Instant::now());
                self.fetch_audio_step(step);
            }
            _ => self.input(Input::Fetched {
                id: outdial_vxml::FetchId(id),
                result,
            }),
        }
    }

    /// Carries out what the `fetchaudio` schedule decided.
    fn fetch_audio_step(&mut self, step: Option<Step>) {
        let Some(pending) = self.fetch_audio.as_mut() else {
            return;
        };
        match step {
            None => {}
            Some(Step::Start) => match &self.player {
                Some(player) if self.hung_up_at.is_none() => {
                    tracing::info!(call = %self.record.id, url = %crate::redact::url(pending.url.as_str()), id = pending.play, "fetchaudio started");
                    let job = PlayerJob::FetchAudio {
                        id: pending.play,
                        url: pending.url.clone(),
                        epoch: self.epoch.load(Ordering::Acquire),
                    };
                    let _ = player.jobs.send(job);
                }
                _ => {
                    let step = pending.schedule.audio_ended();
                    self.fetch_audio_step(step);
                }
            },
            Some(Step::StopAndRelease) => {
                tracing::info!(call = %self.record.id, url = %crate::redact::url(pending.url.as_str()), "fetchaudio stopped: the fetch completed");
                if let Some(player) = &self.player {
                    let _ = player.jobs.send(PlayerJob::Stop);
                }
                self.release_fetch();
            }
            Some(Step::Release) => self.release_fetch(),
        }
    }

    /// Hands the held fetch result to the session; the `fetchaudio` is over.
    fn release_fetch(&mut self) {
        if let Some(PendingFetchAudio {
            fetch,
            held: Some(result),
            ..
        }) = self.fetch_audio.take()
        {
            self.input(Input::Fetched {
                id: outdial_vxml::FetchId(fetch),
                result,
            });
        }
    }

    /// Carries out everything the session asks for now.
    async fn perform_actions(&mut self) {
        let mut submitted = false;
        while let Some(action) = self.session.as_mut().and_then(Session::poll_action) {
            match action {
                Action::Fetch(request) => {
                    if request.purpose == FetchPurpose::Submit {
                        submitted = true;
                    }
                    let fetcher = self.context.fetchers.for_tenant(&self.record.tenant);
                    let max = self.context.settings.max_document_bytes;
                    tracing::debug!(
                        call = %self.record.id,
                        url = %crate::redact::url(request.url.as_str()),
                        method = if request.method == FetchMethod::Post { "POST" } else { "GET" },
                        purpose = match request.purpose {
                            FetchPurpose::Document => "document",
                            FetchPurpose::Submit => "submit",
                            FetchPurpose::Script => "script",
                            FetchPurpose::Data => "data",
                            FetchPurpose::Grammar => "grammar",
                        },
                        files = request.files.len(),
                        "fetch"
                    );
                    if let Some(url) = &request.fetchaudio
                        && self.player.is_some()
                        && self.hung_up_at.is_none()
                    {
                        let play = self.next_fetch_audio;
                        self.next_fetch_audio = self
                            .next_fetch_audio
                            .checked_add(1)
                            .unwrap_or(FETCHAUDIO_IDS);
                        tracing::debug!(
                            call = %self.record.id,
                            url = %crate::redact::url(url.as_str()),
                            delay_ms = request.fetchaudio_delay.as_millis() as u64,
                            minimum_ms = request.fetchaudio_minimum.as_millis() as u64,
                            "fetchaudio scheduled"
                        );
                        self.fetch_audio = Some(PendingFetchAudio {
                            fetch: request.id.0,
                            url: url.clone(),
                            play,
                            schedule: FetchAudio::new(
                                Instant::now(),
                                request.fetchaudio_delay,
                                request.fetchaudio_minimum,
                                !self.prompts_in_flight.is_empty(),
                            ),
                            held: None,
                        });
                    }
                    self.fetches.spawn(async move {
                        let id = request.id.0;
                        (
                            id,
                            crate::vxml_fetch::perform(&fetcher, &request, max).await,
                        )
                    });
                }
                Action::Play { id, prompt } => match &self.player {
                    Some(player) if self.hung_up_at.is_none() => {
                        let epoch = self.epoch.load(Ordering::Acquire);
                        self.prompts_in_flight.insert(id);
                        let _ = player.jobs.send(PlayerJob::Prompt { id, prompt, epoch });
                    }
                    _ => self.input(Input::PlaybackDone {
                        id,
                        interrupted: true,
                    }),
                },
                Action::StopPlayback => {
                    tracing::debug!(call = %self.record.id, "hotword matched: stopping playback");
                    // Through the player, so it follows every prompt already handed to it.
                    if let Some(player) = &self.player {
                        let _ = player.jobs.send(PlayerJob::Stop);
                    }
                }
                Action::Heard(heard) => {
                    // Keys may be a PIN: never at info.
                    let heard = crate::redact::input(&heard);
                    tracing::trace!(call = %self.record.id, %heard, "input consumed");
                }
                Action::Listen(listen) => {
                    tracing::trace!(
                        call = %self.record.id,
                        dtmf = listen.dtmf,
                        voice = listen.voice,
                        timeout_ms = listen.timeout.as_millis() as u64,
                        "listening"
                    );
                    let step = self.speech.on_listen(&listen);
                    self.speech_step(step);
                    let playing = !self.prompts_in_flight.is_empty();
                    self.answer_on(early::Step::Listens { playing });
                }
                Action::Record(request) => {
                    self.answer_on(early::Step::Records);
                    self.start_recording(&request);
                }
                Action::Transfer(request) => {
                    self.answer_on(early::Step::Transfers);
                    if self.awaiting_ack {
                        self.deferred_transfer = Some(request);
                    } else {
                        self.start_transfer(request);
                    }
                }
                Action::Disconnect { values } => {
                    tracing::info!(call = %self.record.id, values = values.len(), "<disconnect>: hanging up; the session goes on");
                    if self.hung_up_at.is_none() && !self.disconnected {
                        self.hangup();
                    }
                    self.disconnected = true;
                }
                Action::Log { label, text } => {
                    tracing::info!(call = %self.record.id, label = label.as_deref().unwrap_or(""), "vxml log: {}", crate::redact::text(&text));
                }
                Action::End(end) => {
                    let (how, detail) = match &end {
                        SessionEnd::Exit { .. } => ("exit", String::new()),
                        SessionEnd::Disconnect => ("disconnect", String::new()),
                        SessionEnd::Hangup => ("hangup", String::new()),
                        SessionEnd::Error { event, message } => {
                            ("error", format!("{event}: {message}"))
                        }
                    };
                    tracing::info!(call = %self.record.id, end = how, detail, "session ended");
                    if self.hung_up_at.is_none() && !self.disconnected {
                        self.hangup();
                    }
                    self.session_end = Some(end);
                }
            }
        }
        if std::mem::take(&mut self.prompts_done) && self.session_end.is_none() {
            self.answer_on(early::Step::PromptsDone);
        }
        let listens = self
            .session
            .as_ref()
            .is_some_and(Session::listens_for_voice);
        let step = self.speech.follow(listens);
        self.speech_step(step);
        if submitted && let Some(values) = self.session.as_ref().and_then(Session::submitted) {
            let opt_out = opt_out_requested(values);
            let result: Map<String, Value> = values
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let result = Value::Object(result);
            self.result = Some(result.clone());
            let stored = self
                .context
                .store
                .store_result(&self.record.id, result)
                .await;
            if let Err(e) = stored {
                tracing::error!(call = %self.record.id, error = %e, "cannot store the submitted values");
            } else {
                self.record.result = self.result.clone();
            }
            if opt_out {
                self.record_opt_out().await;
            }
        }
    }

    /// The callee asked, through the application, not to be called by this tenant again.
    async fn record_opt_out(&mut self) {
        let recorded = self
            .context
            .store
            .set_opt_out(
                &self.record.to,
                crate::store::OptOutScope::Tenant(self.record.tenant.clone()),
                true,
                OffsetDateTime::now_utc(),
            )
            .await;
        match recorded {
            Ok(_) => {
                metrics::counter!("outdial_opt_outs_recorded_total").increment(1);
                tracing::info!(call = %self.record.id, tenant = %self.record.tenant, "the callee opted out during the call");
            }
            Err(e) => {
                tracing::error!(call = %self.record.id, error = %e, "cannot record the callee's opt-out")
            }
        }
    }

    /// Notes early media in the call's history (no status change, no webhook).
    async fn note_early_media(&mut self, cause: &str) {
        let noted = self
            .context
            .store
            .record_early_media(
                &self.record.id,
                self.attempt,
                OffsetDateTime::now_utc(),
                cause,
            )
            .await;
        if let Err(e) = noted {
            tracing::error!(call = %self.record.id, error = %e, "cannot note early media");
        }
    }

    /// Records a live status change (with its event and webhook, in one transaction).
    async fn transition(&mut self, status: CallStatus, cause: &str) {
        let transition = Transition {
            status,
            at: OffsetDateTime::now_utc(),
            cause: Some(cause.to_owned()),
            sip_status: None,
        };
        let stored = self
            .context
            .store
            .record_transition(&self.record.id, self.attempt, transition)
            .await;
        match stored {
            Ok(record) => {
                self.record = record;
                notify(&self.context);
            }
            Err(e) => {
                tracing::error!(call = %self.record.id, error = %e, "cannot update call record")
            }
        }
    }

    /// Combines the dataplane's outcome with how the session and the API ended the call.
    fn final_state(&self, outcome: Outcome) -> Final {
        let mut state = Final {
            status: match outcome.disposition {
                Disposition::Completed => CallStatus::Completed,
                Disposition::Busy => CallStatus::Busy,
                Disposition::NoAnswer => CallStatus::NoAnswer,
                Disposition::Failed => CallStatus::Failed,
                Disposition::Canceled => CallStatus::Canceled,
                Disposition::AuthFailed | Disposition::Unreachable => CallStatus::Failed,
            },
            disposition: Some(outcome.disposition),
            sip_status: outcome.sip_status,
            reason: outcome.reason,
        };
        if let Some(reason) = self.canceled {
            state.status = CallStatus::Canceled;
            state.reason = reason.into();
        } else if self.machine_hung_up {
            state.status = CallStatus::Completed;
            state.reason = "a machine answered; hung up (machine_detection = hangup)".into();
        } else if let Some(dest) = &self.transferred_to {
            // The call did what it was for: the caller is with `dest` now.
            state.status = CallStatus::Completed;
            state.reason = format!("the caller was transferred to {dest} (blind transfer)");
        } else if let Some(SessionEnd::Error { event, message }) = &self.session_end {
            state.status = CallStatus::Failed;
            state.reason = format!("{event}: {message}");
        } else if self.disconnected {
            state.reason = "the application ended the call (<disconnect>)".into();
        } else if let Some(end) = &self.session_end
            && self.hung_up_at.is_none()
        {
            state.reason = match end {
                SessionEnd::Exit { value: Some(value) } => {
                    format!("the application ended the call (<exit> {value})")
                }
                SessionEnd::Exit { value: None } => {
                    "the application ended the call (<exit>)".into()
                }
                SessionEnd::Disconnect => "the application ended the call (<disconnect>)".into(),
                SessionEnd::Hangup | SessionEnd::Error { .. } => state.reason,
            };
        } else if self.session.is_some() && self.session_end.is_none() && self.hung_up_at.is_some()
        {
            state.reason = format!("{} (the application was still running)", state.reason);
        }
        state
    }
}

/// Work for the player, done in the order given.
enum PlayerJob {
    /// A prompt on its way to the core, with the barge-in epoch it was issued in.
    Prompt {
        id: u32,
        prompt: outdial_vxml::Prompt,
        epoch: u32,
    },
    /// A `fetchaudio` clip: played without barge-in; one that cannot be loaded is skipped.
    FetchAudio { id: u32, url: String, epoch: u32 },
    /// Stop what the core plays (the `fetchaudio`) before anything queued after this job.
    Stop,
}

/// Renders prompts in order and queues them on the core in that same order.
///
/// A prompt issued before a barge-in (an older epoch than the call's) is reported as
/// interrupted instead of played; the core applies the same rule to one already on its way.
fn spawn_player(
    context: RunnerContext,
    record: &CallRecord,
    line: Line,
    call: CallId,
    epoch: Arc<AtomicU32>,
    events: mpsc::UnboundedSender<CallSignal>,
    mut first_prompt: FirstPrompt,
) -> Player {
    let (tx, mut rx) = mpsc::unbounded_channel::<PlayerJob>();
    let audio = context.fetchers.for_tenant_scoped(&record.tenant);
    let public_id = record.id.clone();
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let (id, issued_in, audio, bargein) = match job {
                PlayerJob::Stop => {
                    if line.send(Command::StopPlayback { call }).is_err() {
                        tracing::warn!(call = %public_id, "core queue full: fetchaudio not stopped");
                    }
                    continue;
                }
                PlayerJob::Prompt {
                    id,
                    epoch: issued_in,
                    ..
                }
                | PlayerJob::FetchAudio {
                    id,
                    epoch: issued_in,
                    ..
                } if issued_in < epoch.load(Ordering::Acquire) => {
                    let _ = events.send(CallSignal::PromptSkipped(id));
                    continue;
                }
                PlayerJob::Prompt {
                    id,
                    prompt,
                    epoch: issued_in,
                } => {
                    let (audio, marks) = match render(&context.prompts, &audio, &prompt, &public_id)
                        .await
                    {
                        Ok(rendered) => rendered,
                        Err(RenderFailure { event, message }) => {
                            let _ = events.send(CallSignal::PromptFailed { id, event, message });
                            continue;
                        }
                    };
                    if !marks.is_empty() {
                        let _ = events.send(CallSignal::PromptMarks { id, marks });
                    }
                    (id, issued_in, audio, prompt.bargein)
                }
                PlayerJob::FetchAudio {
                    id,
                    url,
                    epoch: issued_in,
                } => match context.prompts.audio_via(&audio.0, &audio.1, &url).await {
                    Ok(audio) => (id, issued_in, audio, false),
                    Err(e) => {
                        tracing::warn!(call = %public_id, url = %crate::redact::url(url.as_str()), error = %e, "fetchaudio unavailable: the fetch goes on in silence");
                        let _ = events.send(CallSignal::PromptSkipped(id));
                        continue;
                    }
                },
            };
            let command = Command::Play {
                call,
                id,
                audio,
                bargein,
                epoch: issued_in,
            };
            if line.send(command).is_err() {
                tracing::warn!(call = %public_id, "core queue full: prompt skipped");
                let _ = events.send(CallSignal::PromptSkipped(id));
            } else {
                first_prompt.sent(Instant::now());
            }
        }
    });
    Player {
        jobs: tx,
        task: task.abort_handle(),
    }
}

/// A call's prompt player: where prompts go, and how to stop it when the call ends.
struct Player {
    jobs: mpsc::UnboundedSender<PlayerJob>,
    task: tokio::task::AbortHandle,
}

impl Drop for Player {
    fn drop(&mut self) {
        // Renders for a call that is over are wasted work: stop at once.
        self.task.abort();
    }
}

/// Why a prompt could not be rendered: the event the session throws, and its `_message`.
struct RenderFailure {
    event: &'static str,
    message: String,
}

/// Turns one prompt into one piece of 8 kHz audio, with the sample offset of each `<mark>`
/// in it. An `<audio>` that cannot be played is replaced by its fallback; one without a
/// fallback fails the prompt with `error.badfetch` (VoiceXML 2.0 §4.1.3), and text that
/// text-to-speech cannot render (it failed, or ran past its time limit) with
/// `error.noresource`: the application hears of it, rather than a prompt cut short in silence.
async fn render(
    prompts: &PromptRenderer,
    audio: &(Fetcher, String),
    prompt: &outdial_vxml::Prompt,
    call: &str,
) -> Result<(outdial_dataplane::api::Pcm8k, Vec<(String, usize)>), RenderFailure> {
    let noresource = |e: crate::prompts::RenderError| RenderFailure {
        event: "error.noresource",
        message: e.to_string(),
    };
    let mut pieces: VecDeque<outdial_dataplane::api::Pcm8k> = VecDeque::new();
    let mut rendered = 0usize;
    let mut marks = Vec::new();
    for item in &prompt.items {
        let audio = match item {
            outdial_vxml::PromptItem::Text(text) if text.trim().is_empty() => continue,
            outdial_vxml::PromptItem::Text(text) => {
                prompts.speak(text).await.map_err(noresource)?
            }
            outdial_vxml::PromptItem::Audio { url, fallback } => {
                match prompts.audio_via(&audio.0, &audio.1, url).await {
                    Ok(audio) => audio,
                    Err(e) => {
                        tracing::warn!(%call, url = %crate::redact::url(url.as_str()), error = %e, "audio unavailable; using fallback");
                        match fallback {
                            Some(text) if !text.trim().is_empty() => {
                                prompts.speak(text).await.map_err(noresource)?
                            }
                            _ => {
                                return Err(RenderFailure {
                                    event: "error.badfetch",
                                    message: format!(
                                        "audio {url} cannot be played and has no fallback: {e}"
                                    ),
                                });
                            }
                        }
                    }
                }
            }
            outdial_vxml::PromptItem::Ssml(ssml) => {
                prompts.speak_ssml(ssml).await.map_err(noresource)?
            }
            outdial_vxml::PromptItem::Recording(clip) => {
                prompts.recording(clip).await.map_err(|e| RenderFailure {
                    event: "error.noresource",
                    message: e.to_string(),
                })?
            }
            outdial_vxml::PromptItem::Break(duration) => PromptRenderer::silence(*duration),
            // Marks play nothing: they note where they fall (VoiceXML 2.1 §4).
            outdial_vxml::PromptItem::Mark(name) => {
                marks.push((name.clone(), rendered));
                continue;
            }
        };
        rendered += audio.len();
        pieces.push_back(audio);
    }
    if pieces.len() == 1 {
        // invariant: len() == 1 was just checked.
        return Ok((pieces.pop_front().expect("one piece"), marks));
    }
    let mut audio = Vec::with_capacity(rendered);
    for piece in pieces {
        audio.extend_from_slice(&piece);
    }
    Ok((audio.into(), marks))
}

/// The last mark at or before `played` samples into a prompt, and the audio played since it
/// (8,000 samples a second): what `markname`/`marktime` report (VoiceXML 2.1 §4).
fn mark_at(marks: &[(String, usize)], played: usize) -> Option<(&str, Duration)> {
    let (name, offset) = marks.iter().rev().find(|(_, offset)| *offset <= played)?;
    let since = u64::try_from(played - offset).unwrap_or(u64::MAX);
    Some((
        name.as_str(),
        Duration::from_micros(since.saturating_mul(125)),
    ))
}

/// Closes the attempt: its CDR, and the call final or queued again for a retry (the rule of
/// [`crate::model::RetryPolicy::next`]), in one store transaction.
async fn finish(
    context: &RunnerContext,
    record: &CallRecord,
    ended: Ended,
    state: Final,
    result: Option<Value>,
) {
    let ended_at = OffsetDateTime::now_utc();
    let next = record
        .retry
        .next(state.status, ended.attempt, ended_at, record.not_after);
    let end = AttemptEnd {
        status: state.status,
        ended_at,
        sip_status: state.sip_status,
        disposition: state.disposition.map(|d| disposition_label(d).to_owned()),
        reason: state.reason,
        core: ended.core.and_then(|c| u32::try_from(c).ok()),
        sip_call_id: ended.sip_call_id,
        result,
        media: ended.media,
    };
    match context
        .store
        .finish_attempt(&record.id, ended.attempt, end, next)
        .await
    {
        Ok(record) => {
            metrics::counter!("outdial_calls_ended_total", "status" => record.status.as_str())
                .increment(1);
            tracing::info!(
                call = %record.id,
                attempt = ended.attempt,
                status = %record.status,
                reason = record.reason.as_deref().unwrap_or(""),
                "attempt finished"
            );
            notify(context);
            if record.status == CallStatus::Queued {
                context.scheduler.queued(&record);
            }
        }
        Err(e) => tracing::error!(call = %record.id, error = %e, "cannot store the call's end"),
    }
}

/// A status change is in the outbox: let the webhook worker look now.
fn notify(context: &RunnerContext) {
    context.webhooks.wake();
}

/// The trunk of the call's tenant and the tenant's caller ID (one store read).
async fn tenant_trunk(
    context: &RunnerContext,
    tenant: &str,
) -> Result<(Arc<Trunk>, Option<String>), String> {
    let stored = context
        .store
        .get_tenant(tenant)
        .await
        .map_err(|e| format!("cannot read tenant {tenant}: {e}"))?;
    let (trunk, caller_id) = stored.map_or((None, None), |t| (t.trunk, t.caller_id));
    let trunk = context
        .settings
        .trunks
        .for_tenant(trunk.as_deref())
        .map_err(|e| e.to_string())?;
    Ok((trunk, caller_id))
}

/// Where a trunk's proxy (or registrar), `host[:port]`, takes SIP: an IP literal as it is,
/// a name located per RFC 3263 ([`SipDns::locate`]); best first, never empty.
pub(crate) async fn locate_proxy(
    dns: &SipDns,
    proxy: &str,
    transport: Transport,
) -> Result<Vec<SocketAddr>, String> {
    use outdial_dataplane::sip::message::{Host, Uri};
    let uri = format!("sip:{proxy}");
    let parsed =
        Uri::parse(&uri).map_err(|e| format!("cannot parse the trunk proxy {proxy}: {e}"))?;
    let Some(sip) = parsed.sip() else {
        return Err(format!("cannot parse the trunk proxy {proxy}"));
    };
    if (transport != Transport::Tls || sip.port.is_some())
        && let Some(addr) = sip.socket_addr()
    {
        return Ok(vec![addr]);
    }
    let host = match sip.host {
        Host::Name(name) => name.to_owned(),
        Host::Ipv4(_) | Host::Ipv6(_) => sip.host.to_string(),
    };
    dns.locate_for(&host, sip.port, transport)
        .await
        .map_err(|e| format!("cannot find the trunk proxy {proxy}: {e}"))
}

/// The name a TLS trunk's certificate must carry: the host of its proxy, else of the
/// Request-URI (without port or IPv6 brackets).
fn tls_server_name(proxy: Option<&str>, target: &str) -> String {
    use outdial_dataplane::sip::message::Uri;
    let uri = match proxy {
        Some(proxy) => format!("sip:{proxy}"),
        None => target.to_owned(),
    };
    Uri::parse(&uri)
        .ok()
        .and_then(|u| u.sip().map(|sip| sip.host.to_string()))
        .map(|host| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        })
        .unwrap_or_default()
}

/// Where to send the INVITE for `target`: `None` when its host is an IP address (or
/// `localhost`) the core uses as it is; otherwise the addresses RFC 3263 gives for the name,
/// best first.
async fn locate_callee(
    dns: &SipDns,
    target: &str,
    transport: Transport,
) -> Result<Option<Vec<SocketAddr>>, String> {
    use outdial_dataplane::sip::message::{Host, Uri};
    let uri =
        Uri::parse(target).map_err(|e| format!("cannot parse the callee URI {target}: {e}"))?;
    let Some(sip) = uri.sip() else {
        return Err(format!("{target} is not a sip: URI"));
    };
    // The core dials an IP literal on its own, to port 5060 when none is given; TLS needs
    // an address resolved here (its default port is 5061, and the connection needs it).
    if sip.socket_addr().is_some() && (transport != Transport::Tls || sip.port.is_some()) {
        return Ok(None);
    }
    let host = match sip.host {
        Host::Name(name) => name.to_owned(),
        Host::Ipv4(_) | Host::Ipv6(_) => sip.host.to_string(),
    };
    dns.locate_for(&host, sip.port, transport)
        .await
        .map(Some)
        .map_err(|e| format!("cannot find the callee's host: {e}"))
}

/// The media type of recordings.
const WAV_MEDIA_TYPE: &str = "audio/wav";

/// The stored name of a SIP-level disposition (the same words as the statuses).
/// A blind transfer's outcome as the `<transfer>` form item sees it (VoiceXML 2.0 §2.3.7.2.2).
fn transfer_outcome(outcome: CoreTransferOutcome) -> TransferOutcome {
    match outcome {
        CoreTransferOutcome::Transferred => TransferOutcome::Transferred,
        CoreTransferOutcome::Busy => TransferOutcome::Busy,
        CoreTransferOutcome::NoAnswer => TransferOutcome::NoAnswer,
        CoreTransferOutcome::NetworkBusy => TransferOutcome::NetworkBusy,
        CoreTransferOutcome::Unknown => TransferOutcome::Unknown,
    }
}

/// The event a transfer that could not be tried throws (VoiceXML 2.0 §5.2.6): a REFER the
/// callee forbids is `noauthorization`, one it does not implement is unsupported, a target
/// it cannot use is `baddestination`.
fn transfer_error_event(error: CoreTransferError) -> &'static str {
    match error {
        CoreTransferError::Refused {
            status: 401 | 403 | 407 | 603,
        } => "error.connection.noauthorization",
        CoreTransferError::Refused {
            status: 404 | 410 | 416 | 484 | 485 | 604,
        }
        | CoreTransferError::BadDestination => "error.connection.baddestination",
        CoreTransferError::Refused {
            status: 405 | 420 | 501,
        } => "error.unsupported.transfer.blind",
        CoreTransferError::Refused { .. }
        | CoreTransferError::NoResponse
        | CoreTransferError::NotConnected
        | CoreTransferError::InProgress => "error.connection",
    }
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
    }
}

fn disposition_label(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::Completed => "completed",
        Disposition::Busy => "busy",
        Disposition::NoAnswer => "no-answer",
        Disposition::Failed => "failed",
        Disposition::Canceled => "canceled",
        Disposition::AuthFailed => "auth-failed",
        Disposition::Unreachable => "unreachable",
    }
}

/// A From URI: the request's (a bare number or user becomes `sip:<it>@<default host>`), or the default.
fn from_uri(from: Option<&str>, default: &str) -> String {
    match from {
        Some(f) if f.starts_with("sip:") => f.to_owned(),
        Some(user) => {
            let host = default
                .strip_prefix("sip:")
                .and_then(|rest| rest.split_once('@').map(|(_, host)| host))
                .unwrap_or("127.0.0.1");
            format!("sip:{user}@{host}")
        }
        None => default.to_owned(),
    }
}

/// The submitted variable by which an application records the callee's opt-out from the
/// call's tenant (`docs/policy.md`): `outdial_opt_out` submitted as `true`, `yes` or `1`.
pub const OPT_OUT_VARIABLE: &str = "outdial_opt_out";

/// Whether the submitted `values` ask to record an opt-out.
fn opt_out_requested(values: &[(String, String)]) -> bool {
    values.iter().any(|(name, value)| {
        name == OPT_OUT_VARIABLE
            && ["true", "yes", "1"]
                .iter()
                .any(|yes| value.trim().eq_ignore_ascii_case(yes))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_uri_completes_bare_numbers_with_the_default_host() {
        assert_eq!(
            from_uri(None, "sip:outdial@10.0.0.1"),
            "sip:outdial@10.0.0.1"
        );
        assert_eq!(
            from_uri(Some("+15550100"), "sip:outdial@10.0.0.1:5060"),
            "sip:+15550100@10.0.0.1:5060"
        );
        assert_eq!(from_uri(Some("sip:a@b"), "sip:outdial@x"), "sip:a@b");
    }

    /// A resolver whose server (loopback port 9) never answers: anything that reaches DNS
    /// fails, naming the host.
    fn dead_dns() -> SipDns {
        SipDns::new(&[SocketAddr::from(([127, 0, 0, 1], 9))]).expect("resolver")
    }

    async fn locate_proxy_udp(dns: &SipDns, proxy: &str) -> Result<Vec<SocketAddr>, String> {
        locate_proxy(dns, proxy, Transport::Udp).await
    }

    async fn locate_callee_udp(
        dns: &SipDns,
        target: &str,
    ) -> Result<Option<Vec<SocketAddr>>, String> {
        locate_callee(dns, target, Transport::Udp).await
    }

    #[tokio::test]
    async fn tls_targets_are_located_on_5061_and_named_for_the_certificate() {
        let dns = dead_dns();
        assert_eq!(
            locate_callee(&dns, "sip:a@192.0.2.30", Transport::Tls).await,
            Ok(Some(vec![SocketAddr::from(([192, 0, 2, 30], 5061))]))
        );
        assert_eq!(
            locate_proxy(&dns, "192.0.2.30", Transport::Tls).await,
            Ok(vec![SocketAddr::from(([192, 0, 2, 30], 5061))])
        );
        assert_eq!(
            locate_proxy(&dns, "192.0.2.30", Transport::Tcp).await,
            Ok(vec![SocketAddr::from(([192, 0, 2, 30], 5060))])
        );
        assert_eq!(
            tls_server_name(Some("edge.carrier.example:5061"), "sip:+1@x"),
            "edge.carrier.example"
        );
        assert_eq!(
            tls_server_name(None, "sip:+1@[2001:db8::1]:5061"),
            "2001:db8::1"
        );
    }

    #[tokio::test]
    async fn trunk_proxies_are_addresses_or_located_names() {
        let dns = dead_dns();
        let v4 = SocketAddr::from(([192, 0, 2, 30], 5060));
        assert_eq!(locate_proxy_udp(&dns, "192.0.2.30").await, Ok(vec![v4]));
        assert_eq!(
            locate_proxy_udp(&dns, "192.0.2.30:5080").await,
            Ok(vec![SocketAddr::from(([192, 0, 2, 30], 5080))])
        );
        let missing = locate_proxy_udp(&dns, "no-such-proxy.invalid").await;
        assert!(
            matches!(&missing, Err(reason) if reason.contains("trunk proxy no-such-proxy.invalid")),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn callee_hosts_are_located_only_when_they_are_names() {
        let dns = dead_dns();
        assert_eq!(
            locate_callee_udp(&dns, "sip:a@127.0.0.1:5070").await,
            Ok(None)
        );
        assert_eq!(locate_callee_udp(&dns, "sip:a@localhost").await, Ok(None));
        let missing = locate_callee_udp(&dns, "sip:a@no-such-host.invalid").await;
        assert!(
            matches!(&missing, Err(reason) if reason.contains("no-such-host.invalid")),
            "{missing:?}"
        );
        let not_sip = locate_callee_udp(&dns, "tel:+15550100").await;
        assert!(not_sip.is_err(), "{not_sip:?}");
    }

    fn ended(disposition: Disposition, sip_status: Option<u16>, reason: &str) -> Outcome {
        Outcome {
            disposition,
            sip_status,
            reason: reason.to_owned(),
        }
    }

    #[test]
    fn only_silence_an_icmp_error_or_503_moves_to_the_next_address() {
        use Disposition::{Busy, Canceled, Failed, NoAnswer, Unreachable};
        let next = |d, s, r| worth_another_address(&ended(d, s, r));
        // The core says "unreachable" for Timer B, the no-response timeout and ICMP errors;
        // the words of the reason do not matter.
        assert!(next(
            Unreachable,
            None,
            "no response from 192.0.2.1:5060 (Timer B)"
        ));
        assert!(next(Unreachable, None, "anything"));
        assert!(!next(
            Failed,
            None,
            "no response from 192.0.2.1:5060 (Timer B)"
        ));
        assert!(next(Failed, Some(503), "503 Service Unavailable"));
        assert!(!next(Failed, Some(500), "500 Server Internal Error"));
        assert!(!next(Failed, Some(404), "404 Not Found"));
        assert!(!next(Busy, Some(486), "486 Busy Here"));
        assert!(!next(NoAnswer, None, "no answer within the ring timeout"));
        assert!(!next(Canceled, None, "canceled"));
        assert!(!next(Failed, None, "cannot parse the SDP answer"));
    }

    #[test]
    fn samples_played_map_to_the_last_mark_passed_and_the_time_since() {
        let marks = vec![("intro".to_owned(), 0), ("menu".to_owned(), 16_000)];
        assert_eq!(mark_at(&marks, 0), Some(("intro", Duration::ZERO)));
        assert_eq!(
            mark_at(&marks, 8_000),
            Some(("intro", Duration::from_secs(1)))
        );
        assert_eq!(mark_at(&marks, 16_000), Some(("menu", Duration::ZERO)));
        assert_eq!(
            mark_at(&marks, 16_160),
            Some(("menu", Duration::from_millis(20))),
            "one 20 ms frame past the mark"
        );
        let late = vec![("late".to_owned(), 4_000)];
        assert_eq!(mark_at(&late, 3_999), None, "stopped before its only mark");
        assert_eq!(mark_at(&[], 8_000), None);
    }

    #[test]
    fn refused_transfers_throw_the_event_that_names_why() {
        let refused = |status| transfer_error_event(CoreTransferError::Refused { status });
        for status in [403, 603, 401] {
            assert_eq!(refused(status), "error.connection.noauthorization");
        }
        for status in [405, 501] {
            assert_eq!(refused(status), "error.unsupported.transfer.blind");
        }
        assert_eq!(refused(404), "error.connection.baddestination");
        assert_eq!(refused(500), "error.connection");
        assert_eq!(
            transfer_error_event(CoreTransferError::NoResponse),
            "error.connection"
        );
        assert_eq!(
            transfer_error_event(CoreTransferError::BadDestination),
            "error.connection.baddestination"
        );
        assert_eq!(
            transfer_outcome(CoreTransferOutcome::Busy),
            TransferOutcome::Busy
        );
        assert_eq!(
            transfer_outcome(CoreTransferOutcome::NetworkBusy),
            TransferOutcome::NetworkBusy
        );
    }

    #[test]
    fn an_opt_out_is_recorded_only_for_a_yes_under_its_name() {
        let values = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(opt_out_requested(&values(&[
            ("choice", "9"),
            ("outdial_opt_out", "true")
        ])));
        assert!(opt_out_requested(&values(&[("outdial_opt_out", " YES ")])));
        assert!(!opt_out_requested(&values(&[("outdial_opt_out", "false")])));
        assert!(!opt_out_requested(&values(&[("opt_out", "true")])));
    }
}
