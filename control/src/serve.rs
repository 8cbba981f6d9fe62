//! `outdial serve`: everything in one process — the dataplane cores, the store, the
//! scheduler and dispatcher, the call runners and the HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outdial_dataplane::core::Backend;
use outdial_dataplane::runtime::{Dataplane, DataplaneConfig};
use outdial_dataplane::sip::BorderConfig;
use outdial_dataplane::sip::hep::HepConfig;

use crate::api::{AppState, router};
use crate::config::Config;
use crate::data_lock::DataDirLock;
use crate::dispatch::{CallControl, Control, Dispatch, Dispatcher, EmbeddedNode};
use crate::error::Error;
use crate::fetch::Fetcher;
use crate::http_server::{self, HttpLimits};
use crate::intake::email::{EmailIntake, ReplySender};
use crate::prompts::PromptRenderer;
use crate::readiness::Readiness;
use crate::runner::{RunnerContext, RunnerSettings};
use crate::scheduler::task::Placer;
use crate::scheduler::{self, Scheduler, SchedulerLimits};
use crate::store::DataStore;
use crate::store::sqlite::SqliteStore;
use crate::telephony::{Nodes, TelephonyNode};
use crate::webhook::Webhooks;

/// Runs the whole platform until Ctrl-C or SIGTERM, then drains (see [`drain`]).
pub async fn run(config: Config) -> Result<(), Error> {
    config.validate()?;
    crate::redact::set(config.log.redact);
    let config = Arc::new(config);
    let metrics = crate::telemetry::install()
        .map_err(|e| Error::Config(format!("cannot install the metrics recorder: {e}")))?;

    std::fs::create_dir_all(&config.store.data_dir).map_err(|e| {
        Error::Config(format!(
            "cannot create the data directory {}: {e} (set [store] data_dir to a writable path)",
            config.store.data_dir.display()
        ))
    })?;
    let fd_limit = http_server::raise_fd_limit();
    let max_connections = http_server::connection_cap(
        fd_limit,
        config.calls.max_concurrent,
        config.http.max_connections,
    )
    .map_err(Error::Config)?;
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(config.http.header_timeout_secs),
        body_timeout: Duration::from_secs(config.http.body_timeout_secs),
        idle_timeout: Duration::from_secs(config.http.idle_timeout_secs),
        max_connections,
    };
    // Before the store is touched: a second server must not mark the first one's calls failed.
    let _data_lock =
        DataDirLock::acquire(&config.store.data_dir).map_err(|e| Error::Config(e.to_string()))?;
    let store: Arc<dyn DataStore> = Arc::new(SqliteStore::open(&config.database_path())?);
    let node: Arc<str> = config.node_id().into();
    let recovered = store
        .recover_node(&node, time::OffsetDateTime::now_utc())
        .await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            node = %node,
            "calls this node left live at its last stop were marked failed"
        );
    }
    let _dev_key = store.ensure_dev_tenant(&config.store.data_dir).await?;

    let fetch_timeout = Duration::from_millis(config.fetch.timeout_ms);
    let fetcher = Fetcher::new(&config.sip.user_agent, fetch_timeout)
        .map_err(|e| Error::Fetch(e.to_string()))?
        .with_cache(config.fetch.cache_bytes, config.fetch.cache_entries);
    let prompts = PromptRenderer::new(
        &config.tts.command,
        &config.tts.voice,
        fetcher.clone(),
        config.fetch.max_audio_bytes,
    )
    .with_tts_timeout(Duration::from_millis(config.tts.timeout_ms));
    if let Err(e) = prompts.check_tts().await {
        tracing::warn!(error = %e, "text-to-speech is unavailable: prompts with text will raise error.noresource in their calls");
    }

    let dataplane_config = dataplane_config(&config)?;
    // Starting waits for each core's thread to bind its socket: not work for an async thread.
    let dataplane = tokio::task::spawn_blocking(move || Dataplane::start(dataplane_config))
        .await
        .map_err(|e| Error::Dataplane(format!("dataplane start-up panicked: {e}")))?
        .map_err(|e| Error::Dataplane(e.to_string()))?;
    // The cores run: from now on control yields the CPU to them (see `cpu_priority`).
    match crate::cpu_priority::lower_control_threads(config.dataplane.control_nice) {
        Ok(threads) => tracing::info!(
            threads,
            nice = config.dataplane.control_nice,
            "control threads lowered below the dataplane cores"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot lower control's thread priority; the dataplane cores compete with it as equals"
        ),
    }
    for core in 0..dataplane.core_count() {
        tracing::info!(
            core,
            sip = %dataplane.sip_addr(core).map(|a| a.to_string()).unwrap_or_default(),
            backend = dataplane.backend(core).map_or("", |b| match b {
                outdial_dataplane::core::BackendUsed::IoUring => "io-uring",
                outdial_dataplane::core::BackendUsed::Epoll => "epoll",
            }),
            "telephony core running"
        );
    }
    let dispatcher = Arc::new(Dispatcher::new(dataplane, seed()));
    let sip_dns = Arc::new(
        crate::sip_dns::SipDns::new(&config.sip.dns_server_addrs())
            .map_err(|e| Error::Config(e.to_string()))?,
    );
    let fetchers = Arc::new(crate::fetch::TenantFetchers::new(
        fetcher,
        crate::egress::EgressPolicy::new(&config.egress),
    ));
    let webhooks = Webhooks::new(
        Arc::clone(&store),
        crate::egress::EgressPolicy::new(&config.egress),
    )?;
    let outbox = tokio::spawn(webhooks.clone().run());
    let (scheduler_handle, scheduler_inputs) = scheduler::task::channel();
    let recognizer = speech_recognizer(&config.speech);
    let context = RunnerContext {
        recognizer,
        store: Arc::clone(&store),
        node: Arc::clone(&node),
        fetchers: Arc::clone(&fetchers),
        prompts,
        webhooks,
        settings: Arc::new(RunnerSettings {
            default_from: config.sip.from.clone(),
            ring_timeout: Duration::from_secs(config.calls.ring_timeout_secs),
            max_duration: Duration::from_secs(config.calls.max_duration_secs),
            max_document_bytes: config.fetch.max_document_bytes,
            trunks: Arc::new(crate::trunk::Trunks::new(&config)),
            vxml_limits: config.vxml.limits(),
            machine_detection: config.machine_detection,
            dns: Arc::clone(&sip_dns),
            no_response_timeout: (config.sip.no_response_timeout_ms > 0)
                .then(|| Duration::from_millis(config.sip.no_response_timeout_ms)),
        }),
        scheduler: scheduler_handle.clone(),
    };
    let pump = tokio::spawn(Arc::clone(&dispatcher).pump_events());
    let _registering = tokio::spawn(register_trunks(
        Arc::clone(&dispatcher),
        Arc::clone(&context.settings.trunks),
        Arc::clone(&context.settings.dns),
    ));
    let gauges = tokio::spawn(publish_gauges(Arc::clone(&dispatcher)));
    let now = scheduler::task::micros(time::OffsetDateTime::now_utc());
    let embedded: Arc<dyn TelephonyNode> = Arc::new(EmbeddedNode {
        dispatcher: Arc::clone(&dispatcher),
        capacity: config.calls.max_concurrent,
    });
    let nodes = Nodes::new(
        vec![Arc::clone(&embedded)],
        config.scheduler.node_calls_per_second,
        config.scheduler.node_burst,
        seed(),
        now,
    )
    .with_policy(
        config.policy.max_load_percent,
        config.policy.dispatch_choices,
    );
    let release = SchedulerLimits {
        max_in_flight: config.calls.max_concurrent,
        calls_per_second: config.scheduler.calls_per_second,
        burst: config.scheduler.burst,
    };
    let mut core_scheduler = Scheduler::new(release, now);
    let mut caps = scheduler::task::TenantCaps::default();
    for (tenant, cap) in caps.changes(&store.list_tenants().await?) {
        core_scheduler.set_tenant_cap(&tenant, cap);
    }
    for (tenant, rate) in caps.rate_changes(&store.tenant_policies().await?) {
        core_scheduler.set_tenant_rate(&tenant, rate, now);
    }
    tokio::spawn(scheduler::task::follow_tenant_caps(
        Arc::clone(&store),
        scheduler_handle.clone(),
        caps,
        scheduler::task::TENANT_CAPS_EVERY,
    ));
    let gate =
        crate::policy_gate::PolicyGate::new(Arc::clone(&store), config.policy.operator_policy())
            .with_egress(crate::egress::EgressPolicy::new(&config.egress))
            .with_fetchers(Arc::clone(&fetchers))
            .with_sip_dns(Arc::clone(&sip_dns));
    for entry in &config.inbound {
        let tenant = entry.tenant.as_deref().unwrap_or(crate::store::DEV_TENANT);
        if store.get_tenant(tenant).await?.is_none() {
            return Err(Error::Config(format!(
                "`[[inbound]]` number {:?} names the tenant {tenant:?}, which does not exist: \
                 create it with `outdial tenant add` or fix the name",
                entry.number
            )));
        }
    }
    dispatcher.set_inbound(Arc::new(crate::inbound::Inbound::new(
        crate::inbound::InboundRoutes::new(&config.inbound),
        crate::store::DEV_TENANT.to_owned(),
        context.clone(),
        Arc::clone(&embedded),
        Arc::clone(&dispatcher),
        config.calls.max_concurrent,
    )));
    let placer: Arc<dyn Placer> = Arc::new(Dispatch {
        nodes,
        dispatcher: Arc::clone(&dispatcher),
        context,
    });
    let scheduler = tokio::spawn(scheduler::task::run(
        core_scheduler,
        scheduler_inputs,
        Arc::clone(&store),
        node.to_string(),
        placer,
        gate.clone(),
    ));

    let control: Arc<dyn CallControl> = Arc::new(Control {
        dispatcher: Arc::clone(&dispatcher),
        scheduler: scheduler_handle,
        capacity: config.calls.max_concurrent,
    });
    let cores = {
        let dispatcher = Arc::clone(&dispatcher);
        move || {
            let dataplane = dispatcher.dataplane();
            let all = dataplane.core_count();
            ((0..all).filter(|&c| dataplane.is_alive(c)).count(), all)
        }
    };
    let readiness = Readiness::new(store.clone(), Arc::new(cores));
    let email_store = Arc::clone(&store);
    let email_control = Arc::clone(&control);
    let app = router(AppState {
        store,
        gate,
        control,
        config: Arc::clone(&config),
        metrics: Some(metrics),
        nonces: Default::default(),
    })
    .merge(readiness.clone().router())
    .layer(axum::middleware::from_fn(http_server::access_log));
    let https = match config.https.files() {
        Some((cert, key)) => {
            let tls = Arc::new(crate::http_tls::TlsReloader::load(cert, key)?);
            Arc::clone(&tls).reload_on_sighup()?;
            Some(tls)
        }
        None => None,
    };
    let scheme = if https.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot listen for HTTP on {}: {e} (set [http] listen to a free address)",
                config.http.listen
            ))
        })?;
    let api: SocketAddr = listener.local_addr()?;
    let (stop_smtp, smtp_stopped) = tokio::sync::watch::channel(false);
    let smtp = if config.smtp.enabled {
        // Attached applications are served by this API: the address actually bound.
        let mut bound = (*config).clone();
        bound.http.listen = api;
        if !config.email.reply_relay.is_empty() {
            let sender = ReplySender::new(
                Arc::clone(&email_store) as Arc<dyn crate::store::ReplyStore>,
                &config.email.reply_relay,
                &config.email.reply_from,
            )
            .map_err(Error::Config)?;
            tokio::spawn(sender.run());
        }
        let intake = EmailIntake::new(&bound, email_store, email_control)
            .map_err(|e| Error::Config(format!("[email]: {e}")))?;
        let server = crate::smtp::spawn(&config.smtp, Arc::new(intake), smtp_stopped)
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        tracing::info!(smtp = %server.local_addr(), "SMTP listening");
        Some(server)
    } else {
        None
    };
    println!("Outdial is running.");
    println!(
        "  HTTP API     {scheme}://{api}/v1/calls   (up to {} connections; fd limit {fd_limit})",
        limits.max_connections
    );
    let cores = dispatcher.dataplane().core_count();
    println!(
        "  SIP          udp:{} ({cores} core{}, core i on port + i)",
        config.sip.listen,
        if cores == 1 { "" } else { "s" }
    );
    if let Some(trunk) = &config.sip.trunk {
        println!("  trunk        {trunk}");
    }
    if let Some(smtp) = &smtp {
        println!(
            "  SMTP         smtp://{}   (call requests by e-mail: docs/email.md)",
            smtp.local_addr()
        );
    }
    println!("  metrics      {scheme}://{api}/metrics   ready: {scheme}://{api}/readyz");
    println!("  data         {}", config.store.data_dir.display());
    println!(
        "  API key      in {}",
        config.store.data_dir.join("dev-api-key").display()
    );
    println!(
        "Place a call:  outdial call --config FILE --to sip:+15550001@127.0.0.1:5070 --url http://…/app.vxml"
    );
    tracing::info!(
        %api,
        max_connections = limits.max_connections,
        fd_limit,
        "HTTP API listening"
    );

    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    let mut server = tokio::spawn(http_server::serve_tls(
        listener,
        app,
        limits,
        https,
        http_stopped,
    ));
    readiness.set_listening();
    let result = tokio::select! {
        () = shutdown_signal() => Ok(()),
        _ = &mut server => Err(Error::Dataplane("the HTTP server stopped unexpectedly".to_owned())),
        pumped = pump => Err(Error::Dataplane(match pumped {
            Ok(Ok(())) => "the dataplane event pump stopped".to_owned(),
            Ok(Err(e)) => format!("the dataplane event pump failed: {e}"),
            Err(e) => format!("the dataplane event pump panicked: {e}"),
        })),
    };
    // Drain: not ready, no new call placed; live calls get the grace, then are hung up. The
    // API keeps answering meanwhile (status reads, new calls queued for the next start).
    readiness.set_draining();
    scheduler.abort();
    let grace = Duration::from_secs(config.calls.drain_grace_secs);
    if result.is_ok() {
        drain(&dispatcher, grace).await;
    }
    gauges.abort();
    hang_up_live_calls(&dispatcher).await;
    // Registrars stop sending calls to a Contact that is going away.
    let unregistered = dispatcher.unregister_all(UNREGISTER_PATIENCE).await;
    if unregistered.1 > 0 {
        tracing::warn!(
            unregistered = unregistered.0,
            unanswered = unregistered.1,
            "some registrations could not be removed before stopping; they lapse at expiry"
        );
    }
    outbox.abort();
    let _ = stop_smtp.send(true);
    if let Some(smtp) = smtp {
        smtp.stopped().await;
    }
    let _ = stop_http.send(true);
    let _ = server.await;
    tracing::info!("stopped");
    result
}

/// How long shutdown waits for registrars to confirm the removal of our bindings.
const UNREGISTER_PATIENCE: Duration = Duration::from_secs(3);

/// Asks core 0 to register every trunk with `register = true` (its REGISTERs carry core
/// 0's address in Contact), at the first address RFC 3263 gives for the trunk's proxy, else
/// its domain. A registrar that cannot be located is logged and not registered until the
/// next start.
async fn register_trunks(
    dispatcher: Arc<Dispatcher>,
    trunks: Arc<crate::trunk::Trunks>,
    dns: Arc<crate::sip_dns::SipDns>,
) {
    for (id, trunk) in trunks.registering() {
        let (Some(domain), Some(expires), Some(credentials)) = (
            trunk.domain(),
            trunk.register_expires,
            trunk.credentials.clone(),
        ) else {
            continue;
        };
        let next_hop = trunk.proxy.as_deref().unwrap_or(domain);
        let located =
            crate::runner::locate_proxy(&dns, next_hop, outdial_dataplane::sip::Transport::Udp)
                .await;
        let (destination, alternatives) = match located {
            Ok(targets) if !targets.is_empty() => (targets[0], targets[1..].to_vec()),
            Ok(_) => {
                tracing::error!(trunk = %trunk.name, "cannot register: {next_hop} has no address");
                continue;
            }
            Err(e) => {
                tracing::error!(trunk = %trunk.name, "cannot register: {e}");
                continue;
            }
        };
        let register = outdial_dataplane::api::Register {
            id,
            registrar: format!("sip:{domain}"),
            aor: format!("sip:{}@{domain}", credentials.username),
            contact_user: credentials.username.clone(),
            destination,
            alternatives,
            expires,
            credentials: Some(credentials),
        };
        tracing::info!(trunk = %trunk.name, registration = id, %destination, "registering");
        if dispatcher
            .send(
                0,
                outdial_dataplane::api::Command::Register(Box::new(register)),
            )
            .is_err()
        {
            tracing::error!(trunk = %trunk.name, "cannot register: dataplane core 0's queue is full");
        } else {
            dispatcher.registered(id);
        }
    }
}

/// Waits, up to `grace`, for live calls to end on their own.
async fn drain(dispatcher: &Dispatcher, grace: Duration) {
    let live = dispatcher.in_flight();
    tracing::info!(
        live,
        grace_secs = grace.as_secs(),
        "draining: no new calls; live calls may finish"
    );
    let deadline = tokio::time::Instant::now() + grace;
    while dispatcher.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes the dispatcher's and the cores' load as Prometheus gauges once a second (the
/// cores keep plain counters; nothing per packet touches the metrics registry).
async fn publish_gauges(dispatcher: Arc<Dispatcher>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Each core's turn counters when last read (none, now), for its busy share since.
    let cores = dispatcher.dataplane().core_count();
    let mut last_turns = vec![
        (
            std::time::Instant::now(),
            outdial_dataplane::agent::TurnStats::default()
        );
        cores
    ];
    loop {
        tick.tick().await;
        metrics::gauge!("outdial_calls_in_flight").set(dispatcher.in_flight() as f64);
        let documents = outdial_vxml::Session::shared_documents().stats();
        metrics::gauge!("outdial_vxml_documents_cached").set(documents.entries as f64);
        metrics::gauge!("outdial_vxml_document_cache_bytes").set(documents.bytes as f64);
        metrics::counter!("outdial_vxml_document_parses_total").absolute(documents.misses);
        metrics::counter!("outdial_vxml_document_cache_hits_total").absolute(documents.hits);
        let grammars = outdial_vxml::Session::shared_grammars().stats();
        metrics::gauge!("outdial_vxml_grammars_cached").set(grammars.entries as f64);
        metrics::gauge!("outdial_vxml_grammar_cache_bytes").set(grammars.bytes as f64);
        metrics::counter!("outdial_vxml_grammar_parses_total").absolute(grammars.misses);
        metrics::counter!("outdial_vxml_grammar_cache_hits_total").absolute(grammars.hits);
        let dataplane = dispatcher.dataplane();
        let (mut hep_sent, mut hep_dropped) = (0, 0);
        let mut strangers = outdial_dataplane::agent::StrangersClosed::default();
        for core in 0..dataplane.core_count() {
            let hep = dataplane.hep_stats(core);
            hep_sent += hep.sent;
            hep_dropped += hep.dropped;
            let closed = dataplane.strangers_closed(core);
            strangers.over_per_source += closed.over_per_source;
            strangers.no_message += closed.no_message;
            strangers.idlest += closed.idlest;
            strangers.no_room += closed.no_room;
            let label = core.to_string();
            metrics::gauge!("outdial_core_live_calls", "core" => label.clone())
                .set(dataplane.load(core) as f64);
            let alive = if dataplane.is_alive(core) { 1.0 } else { 0.0 };
            metrics::gauge!("outdial_core_alive", "core" => label.clone()).set(alive);
            let (now, turns) = (std::time::Instant::now(), dataplane.turn_stats(core));
            metrics::counter!("outdial_core_turns_total", "core" => label.clone())
                .absolute(turns.turns);
            for ((_, over), count) in outdial_dataplane::agent::LONG_TURNS.iter().zip(turns.over) {
                metrics::counter!("outdial_core_long_turns_total", "core" => label.clone(), "over" => *over)
                    .absolute(count);
            }
            if let Some((then, before)) = last_turns.get(core) {
                let elapsed = now.saturating_duration_since(*then).as_secs_f64();
                let busy = turns.busy.saturating_sub(before.busy).as_secs_f64();
                if elapsed > 0.0 {
                    metrics::gauge!("outdial_core_busy_ratio", "core" => label)
                        .set((busy / elapsed).min(1.0));
                }
            }
            if let Some(last) = last_turns.get_mut(core) {
                *last = (now, turns);
            }
        }
        metrics::counter!("outdial_hep_packets_total").absolute(hep_sent);
        metrics::counter!("outdial_hep_dropped_total").absolute(hep_dropped);
        for (reason, count) in [
            ("per_source", strangers.over_per_source),
            ("no_message", strangers.no_message),
            ("idlest", strangers.idlest),
            ("no_room", strangers.no_room),
        ] {
            metrics::counter!("outdial_sip_connections_closed_total", "reason" => reason)
                .absolute(count);
        }
    }
}

/// Asks every live call to end (CANCEL or BYE) and waits, bounded, for them to finish, so
/// that callees are not left connected to a server that is gone.
async fn hang_up_live_calls(dispatcher: &Dispatcher) {
    const PATIENCE: Duration = Duration::from_secs(10);
    let live = dispatcher.cancel_all();
    if live == 0 {
        return;
    }
    tracing::info!(live, "hanging up live calls before stopping");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while dispatcher.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = dispatcher.in_flight();
    if left > 0 {
        tracing::warn!(
            left,
            "calls still ending; they will be marked interrupted at the next start"
        );
    }
}

fn dataplane_config(config: &Config) -> Result<DataplaneConfig, Error> {
    let backend = match config.dataplane.backend.as_str() {
        "auto" => Backend::Auto,
        "io-uring" | "io_uring" => Backend::IoUring,
        "epoll" => Backend::Epoll,
        other => {
            return Err(Error::Config(format!(
                "[dataplane] backend = {other:?} is unknown: use \"auto\", \"io-uring\" or \"epoll\""
            )));
        }
    };
    let cores = match config.dataplane.cores {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    Ok(DataplaneConfig {
        cores,
        sip_listen: config.sip.listen,
        public_ip: config.sip.public_ip,
        rtp_ports: config.rtp.port_min..=config.rtp.port_max,
        t1: Duration::from_millis(config.sip.t1_ms),
        t2: Duration::from_millis(config.sip.t2_ms),
        t4: Duration::from_millis(config.sip.t4_ms),
        user_agent: config.sip.user_agent.clone(),
        border: BorderConfig {
            max_message_bytes: config.sip.max_message_bytes,
            stranger_limit: config.sip.stranger_limit,
            stranger_window: Duration::from_millis(config.sip.stranger_window_ms),
            answer_stranger_invite: config.sip.answer_stranger_invite,
            ..BorderConfig::default()
        },
        inbound_sources: config.sip.inbound_networks(),
        max_calls_per_core: config.calls.max_concurrent,
        session_expires: (config.sip.session_expires_secs > 0)
            .then(|| Duration::from_secs(config.sip.session_expires_secs)),
        hep: config.sip.hep_capture.map(|capture| HepConfig {
            capture,
            agent_id: config.sip.hep_agent_id,
            password: config.sip.hep_password.as_ref().map(|p| p.0.clone()),
            max_per_second: config.sip.hep_max_per_second,
        }),
        sip_tcp: config.sip.tcp,
        udp_mtu_switch: (config.sip.udp_mtu_switch > 0).then_some(config.sip.udp_mtu_switch),
        tcp_connect_timeout: Duration::from_millis(config.sip.tcp_connect_timeout_ms),
        tcp_connections_per_source: config.sip.tcp_connections_per_source,
        tcp_first_message_timeout: Duration::from_millis(config.sip.tcp_first_message_timeout_ms),
        tls_server: config.sip_tls_server()?,
        backend,
        pin: config.dataplane.pin,
        realtime_priority: u8::try_from(config.dataplane.realtime_priority)
            .ok()
            .filter(|p| *p > 0),
        seed: seed(),
    })
}

/// A fresh seed for SIP tags, branches and SSRCs.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // The system RNG failing is near impossible; the clock is a weak but usable fallback.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64;
    }
    u64::from_le_bytes(bytes)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Speech recognition as `[speech]` says; off (with a warning saying why and what to do)
/// when disabled or when the model or libraries are missing, so `serve` still runs: fields
/// with only voice grammars then get `error.noresource`, fields with keys take keys.
fn speech_recognizer(
    config: &crate::config::SpeechConfig,
) -> Option<Arc<dyn crate::runner::Recognizer>> {
    if !config.enabled {
        tracing::info!("speech recognition off (speech.enabled = false)");
        return None;
    }
    match crate::speech::start(config) {
        Ok(recognizer) => {
            tracing::info!(workers = recognizer.workers(), "speech recognition ready");
            Some(Arc::new(recognizer))
        }
        Err(e) => {
            tracing::warn!(error = %e, "speech recognition is unavailable: fields with only voice grammars will raise error.noresource");
            None
        }
    }
}
